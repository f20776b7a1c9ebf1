"""``rps-service timeline PROVIDER MAC``: a device's timeline (docs/timeline.md), through
the daemon's API like the other admin commands (:mod:`rps_service.cli.client`).

One line per entry, oldest first: the time, the kind, and what the entry says in words (a
vendor call's method, URL, status and duration; a phone's request with its address, file,
answer and why it was refused).
"""

from __future__ import annotations

import argparse
from typing import Any

from rps_service.cli.client import (
    EXIT_OK,
    DaemonClient,
    mac_arg,
    print_json,
    shown_value,
    table,
    time_text,
)


def _call(e: dict[str, Any]) -> str:
    return (f"{e.get('method')} {e.get('url')} -> {shown_value(e.get('status'))} "
            f"in {e.get('ms')} ms (event {e.get('event')}, attempt {e.get('attempt')})")


def _fetch(e: dict[str, Any]) -> str:
    text = f"{e.get('file')} from {e.get('ip')} -> {e.get('result')}"
    if e.get("reason"):
        text += f" ({e['reason']})"
    phone = " ".join(str(e[k]) for k in ("model", "firmware") if e.get(k))
    return f"{text}; {phone}" if phone else text


def describe(e: dict[str, Any]) -> str:
    """What one entry says, in one line."""
    kind = e.get("kind")
    if kind == "accepted":
        return f"event {e.get('event')}: {e.get('action')} for server {e.get('server')}"
    if kind == "call":
        return _call(e)
    if kind == "retry":
        return f"event {e.get('event')} is due again then: {e.get('why')}"
    if kind == "outcome":
        text = f"event {e.get('event')} {e.get('state')}"
        if e.get("status"):
            text += f", device {e['status']}"
        return f"{text}: {e['message']}" if e.get("message") else text
    if kind == "fetch":
        return _fetch(e)
    return " ".join(f"{k}={shown_value(v)}" for k, v in e.items() if k not in ("at", "kind"))


def cmd_timeline(client: DaemonClient, args: argparse.Namespace) -> int:
    path = f"/devices/{args.provider}/{mac_arg(args.mac)}/timeline"
    body = client.call("GET", path, params={"limit": args.limit})
    if args.json:
        print_json(body)
        return EXIT_OK
    entries = body.get("entries") or []
    if not entries:
        print("No entries.")
        return EXIT_OK
    print(table(("AT", "KIND", "WHAT"),
                [(time_text(e.get("at")), e.get("kind"), describe(e)) for e in entries]))
    return EXIT_OK


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``timeline`` to the subparsers."""
    p = sub.add_parser("timeline", parents=parents,
                       help="show what happened to a device: events, vendor calls, retries, "
                            "outcomes, the phone's requests")
    p.add_argument("provider", help="e.g. snom")
    p.add_argument("mac", help="the device's MAC")
    p.add_argument("--limit", type=int, default=1000, help="the newest N entries (default "
                                                           "1000)")
    p.set_defaults(handler=cmd_timeline)
