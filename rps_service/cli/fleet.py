"""Admin commands for fleet operations (docs/fleet.md), through the daemon's API.

``rps-service reconcile PROVIDER``, ``repoint SERVER``, ``job ID``, ``settings set|show``,
``replace PROVIDER MAC NEW_MAC``. A job command prints the job's id and, with ``--wait``,
follows it: its progress on stderr (one line a second, as it changes), then, for a job that
queues events, those events until they are finished, then its result (a summary table, or
``--json``). Exit 1 when the job failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from rps_service.cli.client import (
    EXIT_ERROR,
    EXIT_OK,
    DaemonClient,
    credentials_body,
    mac_arg,
    pairs_text,
    positive,
    print_json,
    put,
    table,
)

POLL = 1.0
NOT_FETCHED_SHOWN = 10  # MACs of a re-point's phones not fetched yet, on the terminal


def follow(client: DaemonClient, job_id: int, wait: bool, as_json: bool) -> int:
    """Print a job (after following it to its end with ``wait``); the exit code.

    A job that queues events (a re-point, a repair) is ``done`` once they are queued; with
    ``wait`` it is followed until they are finished too, which is what the operator waits
    for (``events`` by state).
    """
    job = client.call("GET", f"/jobs/{job_id}")
    shown = ""
    while wait and (job["state"] in ("pending", "running") or _unfinished(job)):
        line = _progress(job)
        if line != shown:
            print(line, file=sys.stderr, flush=True)
            shown = line
        time.sleep(POLL)
        job = client.call("GET", f"/jobs/{job_id}")
    if as_json:
        print_json(job)
    else:
        print(_summary(job))
    return EXIT_ERROR if job["state"] == "failed" else EXIT_OK


def _unfinished(job: dict[str, Any]) -> int:
    """How many of the events a job queued are still to be sent (0: none, or it queues none)."""
    events = job.get("events") or {}
    return int(events.get("pending", 0)) + int(events.get("running", 0))


def _progress(job: dict[str, Any]) -> str:
    head = f"job {job['id']} {job['kind']}"
    if job["state"] not in ("pending", "running"):
        events = job.get("events") or {}
        total = sum(events.values())
        return (f"{head}: events {total - _unfinished(job)}/{total} finished "
                f"({events.get('pending', 0)} pending, {events.get('running', 0)} running)")
    progress = job["progress"]
    total = "?" if progress["total"] is None else progress["total"]
    phase = progress["phase"] or job["state"]
    return f"{head}: {phase} {progress['done']}/{total}"


def _summary(job: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [("job", job["id"]), ("kind", job["kind"]),
                                   ("provider", job["provider"]), ("server", job["server"]),
                                   ("state", job["state"])]
    if job.get("error"):
        rows.append(("error", job["error"]))
    rows += [(name, value) for name, value in (job["result"].get("counts") or {}).items()]
    rows += [(f"events {state}", count) for state, count in (job.get("events") or {}).items()]
    if job.get("fetched") is not None:
        rows += [("phones fetched since start", job["fetched"]),
                 ("phones not fetched yet", _not_fetched(job))]
    lines = [table(("KEY", "VALUE"), [(k, "-" if v is None else v) for k, v in rows])]
    result = job["result"]
    differences = [(mac, "missing", "", "") for mac in result.get("missing", [])]
    differences += [(d["mac"], "drift", d["expected"] or "-", d["found"] or "-")
                    for d in result.get("drift", [])]
    differences += [(o["mac"], "orphan", "", o["url"] or "-") for o in result.get("orphan", [])]
    if differences:
        lines += ["", table(("MAC", "DIFFERENCE", "EXPECTED", "FOUND"), differences)]
    return "\n".join(lines)


def _not_fetched(job: dict[str, Any]) -> str:
    """``3: MAC MAC MAC``: a re-point's devices whose phones have not fetched their bootstrap
    file yet (the first few; ``--json`` and ``not_fetched_after`` page through them all)."""
    total, macs = job.get("not_fetched_total") or 0, job.get("not_fetched") or []
    shown = " ".join(macs[:NOT_FETCHED_SHOWN])
    more = " …" if total > min(len(macs), NOT_FETCHED_SHOWN) else ""
    return f"{total}: {shown}{more}" if total else "0"


def _started(client: DaemonClient, args: argparse.Namespace, body: dict[str, Any]) -> int:
    job_id = int(body["job"])
    if not args.wait:
        if args.json:
            print_json(body)
        else:
            print(f"Job {job_id} created; follow it with: rps-service job {job_id} --wait")
        return EXIT_OK
    return follow(client, job_id, True, args.json)


def cmd_reconcile(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("POST", f"/providers/{args.provider}/reconcile",
                       body={"server": args.server, "repair": args.repair,
                             "adopt": args.adopt})
    return _started(client, args, body)


def cmd_repoint(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("POST", f"/servers/{args.server}/repoint",
                       body={"provider": args.provider})
    return _started(client, args, body)


def cmd_job(client: DaemonClient, args: argparse.Namespace) -> int:
    return follow(client, args.id, args.wait, args.json)


def cmd_settings(client: DaemonClient, args: argparse.Namespace) -> int:
    path = f"/servers/{args.server}/settings/{args.provider}"
    if args.verb == "set":
        pairs = credentials_body(args.pairs, None) if args.pairs else {}
        put(client, path, {"settings": {k: str(v).lower() if isinstance(v, bool) else v
                                         for k, v in pairs.items()}})
    shown = client.call("GET", path)
    if args.json:
        print_json(shown)
    elif shown["settings"]:
        print(pairs_text(shown["settings"]))
    else:
        print(f"No extra settings for {args.provider} on server {args.server}.")
    return EXIT_OK


def cmd_replace(client: DaemonClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"new_mac": mac_arg(args.new_mac)}
    for name in ("sn", "mac_id"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    answer = client.call("POST", f"/devices/{args.provider}/{mac_arg(args.mac)}/replace",
                         body=body)
    if args.json:
        print_json(answer)
    else:
        print(table(("ID", "ACTION", "MAC", "SERVER"),
                    [(e["id"], e["action"], e["mac"], e["server"]) for e in answer["events"]]))
    return EXIT_OK


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the fleet commands to the ``rps-service`` subparsers."""
    wait = argparse.ArgumentParser(add_help=False)
    wait.add_argument("--wait", action="store_true",
                      help="follow the job to its end, and the events it queued until they "
                           "are sent: progress on stderr, then the result")
    p = sub.add_parser("reconcile", parents=[*parents, wait],
                       help="compare what a vendor holds with the database (a job)")
    p.add_argument("provider", help="e.g. snom")
    p.add_argument("--server", type=positive, default=1, help="tenant server (default 1)")
    p.set_defaults(handler=cmd_reconcile)
    p.add_argument("--repair", action="store_true",
                   help="queue the events that fix missing and drifted devices")
    p.add_argument("--adopt", action="store_true",
                   help="record devices the vendor holds and the database does not know")
    p = sub.add_parser("repoint", parents=[*parents, wait],
                       help="push every registered device of a server again (a job)")
    p.add_argument("server", type=positive)
    p.add_argument("--provider", required=True, help="e.g. snom")
    p.set_defaults(handler=cmd_repoint)
    p = sub.add_parser("job", parents=[*parents, wait], help="show a fleet job")
    p.add_argument("id", type=positive)
    p.set_defaults(handler=cmd_job)
    p = sub.add_parser("settings", help="set or show a server's extra vendor settings")
    verbs = p.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("set", parents=parents,
                         help="replace them (NAME=VALUE ...; none clears them)")
    s.add_argument("server", type=positive)
    s.add_argument("provider")
    s.add_argument("pairs", nargs="*", metavar="NAME=VALUE")
    s = verbs.add_parser("show", parents=parents, help="show them")
    s.add_argument("server", type=positive)
    s.add_argument("provider")
    p.set_defaults(handler=cmd_settings)
    p = sub.add_parser("replace", parents=parents,
                       help="swap a phone: remove the old MAC, add the new one in its place")
    p.add_argument("provider")
    p.add_argument("mac", help="the old phone's MAC")
    p.add_argument("new_mac", help="the new phone's MAC")
    p.add_argument("--sn", help="the new phone's serial number (vendors that need one)")
    p.add_argument("--mac-id", dest="mac_id", help="the new phone's MAC-ID (Gigaset)")
    p.set_defaults(handler=cmd_replace)
