"""Admin commands for events and devices: ``rps-service events``, ``retry``, ``devices``,
``send`` (one event, or many from a CSV file) and ``test``, through the daemon's API."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rps_service.cli.client import (
    EXIT_ERROR,
    EXIT_OK,
    MAX_SHOWN,
    AdminError,
    DaemonClient,
    DaemonError,
    positive,
    print_json,
    table,
    time_text,
)
from rps_service.models import DEVICE_STATUSES, EVENT_STATES, MAX_BATCH, normalize_mac

DEVICE_PAGE = 1000  # devices a request of ``devices`` asks for
FINISHED = ("done", "failed", "superseded")
WAIT_POLL = 0.2  # seconds between two looks at an event ``send --wait`` follows
#: A CSV line's columns in this order unless a header names them (any order, any subset).
CSV_COLUMNS = ("mac", "server", "model", "name", "extension", "sn", "mac_id")
#: Device details an event carries, from a CSV cell or else the command line's option.
_DETAILS = ("model", "name", "extension", "sn", "mac_id")


def cmd_events(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("GET", "/events", params={"state": args.state, "limit": args.limit,
                                                  "before": args.before})
    if args.json:
        print_json(body)
        return EXIT_OK
    events = body.get("events", [])
    if not events:
        print("No events.")
        return EXIT_OK
    print(table(
        ("ID", "STATE", "ACTION", "PROVIDER", "MAC", "SERVER", "ATTEMPTS", "UPDATED (UTC)",
         "LAST ERROR"),
        [(e["id"], e["state"], e["action"], e["provider"], e["mac"], e["server"],
          e["attempts"], time_text(e.get("updated_at")), e.get("last_error")) for e in events],
    ))
    return EXIT_OK


def cmd_retry(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("POST", f"/events/{args.id}/retry")
    if args.json:
        print_json(body)
    else:
        print(f"Event {args.id} re-queued (state {body.get('state', 'pending')}).")
    return EXIT_OK


def cmd_devices(client: DaemonClient, args: argparse.Namespace) -> int:
    devices, more = _all_devices(client, args)
    if args.json:
        print_json({"devices": devices, "next": more})
        return EXIT_OK
    if not devices:
        print("No devices.")
        return EXIT_OK
    print(table(
        ("PROVIDER", "MAC", "SERVER", "STATUS", "MODEL", "NAME", "EXTENSION",
         "REGISTERED (UTC)", "LAST MESSAGE"),
        [(d["provider"], d["mac"], d["server"], d["status"], d.get("model"), d.get("name"),
          d.get("extension"), time_text(d.get("registered_at")), d.get("last_message"))
         for d in devices],
    ))
    if more is not None:  # never cut a list short without saying so
        print(f"{len(devices)} devices shown; more match (raise --limit, or filter with "
              "--server, --provider, --status)", file=sys.stderr)
    return EXIT_OK


def _all_devices(client: DaemonClient, args: argparse.Namespace
                 ) -> tuple[list[dict[str, Any]], str | None]:
    """Every matching device (at most ``--limit``), page by page with the API's cursor;
    and the cursor of what is left (None when nothing is)."""
    devices: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page_size = DEVICE_PAGE if args.limit is None else min(DEVICE_PAGE,
                                                               args.limit - len(devices))
        body = client.call("GET", "/devices", params={
            "server": args.server, "provider": args.provider, "status": args.status,
            "mac": args.mac, "limit": page_size, "after": after,
        })
        devices += body.get("devices", [])
        after = body.get("next")
        if after is None or (args.limit is not None and len(devices) >= args.limit):
            return devices, after


def cmd_test(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("POST", f"/providers/{args.provider}/test", body={"server": args.server})
    ok = bool(body.get("ok"))
    if args.json:
        print_json(body)
    else:
        print(f"{'OK' if ok else 'FAILED'}: {body.get('message', '')}")
    return EXIT_OK if ok else EXIT_ERROR


def cmd_send(client: DaemonClient, args: argparse.Namespace) -> int:
    if args.csv:
        return _send_csv(client, args)
    event = _event(args, args.mac, {})
    try:
        body = client.call("POST", "/events", body=event)
    except DaemonError as err:
        raise AdminError(err.describe(lambda _: "")) from None  # one event: no index needed
    if args.wait:
        return _wait_for(client, body["events"][0], args.json)
    if args.json:
        print_json(body)
        return EXIT_OK
    for item in body.get("events", []):
        note = " (duplicate key: not stored again)" if item.get("duplicate") else ""
        print(f"Event {item['id']} accepted: {item['action']} {item['provider']} "
              f"{item['mac']} server {item['server']}{note}")
    return EXIT_OK


def _wait_for(client: DaemonClient, item: dict[str, Any], as_json: bool) -> int:
    """Follow an accepted event until it is finished; print how it ended (exit 1: failed)."""
    print(f"Event {item['id']} accepted: {item['action']} {item['provider']} {item['mac']} "
          f"server {item['server']}; waiting for it to finish", file=sys.stderr, flush=True)
    while True:
        event = client.call("GET", f"/events/{item['id']}")
        if event["state"] in FINISHED:
            break
        time.sleep(WAIT_POLL)
    if as_json:
        print_json(event)
    else:
        error = f": {event['last_error']}" if event.get("last_error") not in (None, "", "-") \
            else ""
        print(f"Event {event['id']} {event['state']}: {event['action']} {event['provider']} "
              f"{event['mac']} server {event['server']}{error}")
    return EXIT_ERROR if event["state"] == "failed" else EXIT_OK


def _event(args: argparse.Namespace, mac: str, row: dict[str, str]) -> dict[str, Any]:
    """One event: the row's cells, else the command line's options."""
    event: dict[str, Any] = {"action": args.action, "provider": args.provider, "mac": mac}
    server = row.get("server") or args.server
    if server is not None:
        event["server"] = int(server)
    for field in _DETAILS:
        value = row.get(field) or getattr(args, field)
        if value:
            event[field] = value
    if getattr(args, "key", None):
        event["key"] = args.key
    return event


def read_csv(path: Path, args: argparse.Namespace) -> tuple[list[int], list[dict[str, Any]]]:
    """Events from a CSV of ``mac[,server,model,name,extension,sn,mac_id]``, checked before
    any send.

    A first row starting with ``mac`` is a header naming the columns (any order). Blank
    lines and lines starting with ``#`` are skipped. Returns line numbers and events.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AdminError(f"cannot read {path}: {exc}") from None
    columns: Sequence[str] = CSV_COLUMNS
    lines: list[int] = []
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, raw in enumerate(rows, 1):
        cells = [c.strip() for c in raw]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not lines and not problems and cells[0].lower() == "mac":
            columns = _header(path, number, cells)
            continue
        try:
            events.append(_csv_event(args, columns, cells))
            lines.append(number)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        more = f"; and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        raise AdminError(f"{path}: nothing sent: " + "; ".join(problems[:MAX_SHOWN]) + more)
    if not events:
        raise AdminError(f"{path}: no events in the file")
    return lines, events


def _header(path: Path, number: int, cells: list[str]) -> list[str]:
    names = [c.lower() for c in cells]
    unknown = [n for n in names if n not in CSV_COLUMNS]
    if unknown or len(set(names)) != len(names):
        raise AdminError(f"{path}: line {number}: header columns must be distinct names from "
                         f"{', '.join(CSV_COLUMNS)} (got {', '.join(cells)})")
    return names


def _csv_event(args: argparse.Namespace, columns: Sequence[str], cells: list[str]
               ) -> dict[str, Any]:
    if len(cells) > len(columns):
        raise ValueError(f"{len(cells)} columns, expected at most {len(columns)} "
                         f"({','.join(columns)})")
    row = dict(zip(columns, cells, strict=False))
    try:
        mac = normalize_mac(row.get("mac", ""))
    except ValueError as exc:
        raise ValueError(f"mac {row.get('mac', '')!r}: {exc}") from None
    server = row.get("server")
    if server and (not server.isdigit() or int(server) < 1):
        raise ValueError(f"server {server!r}: must be an integer ≥ 1")
    return _event(args, mac, row)


def _send_csv(client: DaemonClient, args: argparse.Namespace) -> int:
    lines, events = read_csv(Path(args.csv), args)
    total, accepted, duplicates = len(events), [], 0
    for start in range(0, total, MAX_BATCH):
        batch = events[start : start + MAX_BATCH]
        try:
            body = client.call("POST", "/events", body=batch)
        except DaemonError as err:
            where = err.describe(_line_of(lines[start : start + len(batch)]))
            raise AdminError(f"{args.csv}: {where} (sent {start}/{total} before this batch)"
                             ) from None
        except AdminError as err:
            raise AdminError(f"{err} (sent {start}/{total} before this batch)") from None
        accepted += body.get("events", [])
        duplicates += sum(1 for e in body.get("events", []) if e.get("duplicate"))
        print(f"sent {start + len(batch)}/{total}", file=sys.stderr, flush=True)
    if args.json:
        print_json({"accepted": len(accepted), "duplicates": duplicates, "events": accepted})
    else:
        print(f"Accepted {len(accepted)} events from {args.csv} ({duplicates} duplicates).")
    return EXIT_OK


def _line_of(lines: list[int]) -> Callable[[int], str]:
    """A batch's event index → its CSV line, for the daemon's error details."""
    return lambda i: f"line {lines[i]}" if 0 <= i < len(lines) else f"event {i}"


# -- argument parsing -------------------------------------------------------------------


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``events``, ``retry``, ``devices``, ``send`` and ``test`` to the subparsers;
    ``parents`` are the common options (``-c``) and the client's (``--url``, ``--json``)."""
    p = sub.add_parser("events", parents=parents, help="list events (newest first)")
    p.add_argument("--state", choices=EVENT_STATES)
    p.add_argument("--limit", type=positive, default=50, help="at most N (default 50)")
    p.add_argument("--before", type=positive, help="only events with an id below this")
    p.set_defaults(handler=cmd_events)

    p = sub.add_parser("retry", parents=parents, help="re-queue a failed event")
    p.add_argument("id", type=positive, help="the event id")
    p.set_defaults(handler=cmd_retry)

    p = sub.add_parser("devices", parents=parents, help="list devices as the GUI shows them")
    p.add_argument("--server", type=positive)
    p.add_argument("--provider")
    p.add_argument("--status", choices=DEVICE_STATUSES)
    p.add_argument("--mac")
    p.add_argument("--limit", type=positive,
                   help="at most N devices (default: all, fetched 1000 a request)")
    p.set_defaults(handler=cmd_devices)

    p = sub.add_parser("send", parents=parents,
                       help="post an add/remove/update event, or many from a CSV file")
    p.add_argument("action", choices=("add", "remove", "update"))
    p.add_argument("mac", nargs="?", help="the device's MAC (or --csv FILE)")
    p.add_argument("--csv", metavar="FILE",
                   help="one event per line: mac[,server,model,name,extension,sn,mac_id]; "
                        "a first line starting with mac names the columns")
    p.add_argument("--provider", default="snom", help="default: snom")
    p.add_argument("--server", type=positive, help="tenant server (default 1)")
    p.add_argument("--model")
    p.add_argument("--name")
    p.add_argument("--extension")
    p.add_argument("--sn", help="serial number (yealink unless add_by_mac, grandstream)")
    p.add_argument("--mac-id", dest="mac_id", help="the MAC-ID from the label (gigaset)")
    p.add_argument("--key", help="idempotency key (single event only)")
    p.add_argument("--wait", action="store_true",
                   help="follow the event until it is finished and say how it ended "
                        "(exit 1 when it failed; single event only)")
    p.set_defaults(handler=cmd_send)

    p = sub.add_parser("test", parents=parents, help="check a provider's API keys now")
    p.add_argument("provider", help="e.g. snom")
    p.add_argument("--server", type=positive, default=1, help="tenant server (default 1)")
    p.set_defaults(handler=cmd_test)
