"""Admin commands: ``rps-service events|retry|devices|send|test`` (and ``access``,
``credentials``, ``provisioning``: :mod:`rps_service.admin_access`) against the running daemon.

They use the daemon's own HTTP API (so they work against any instance, and never touch the
database behind its back): the URL comes from ``listen``/``port`` in rps.ini (``--url``
overrides it) and the bearer token from ``api_token``. Humans get aligned tables, scripts
``--json`` (the API's own JSON). Any failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from rps_service.config import ConfigError, GeneralSettings, find_config, load_settings
from rps_service.models import DEVICE_STATUSES, EVENT_STATES, MAX_BATCH, normalize_mac

COMMANDS = ("events", "retry", "devices", "send", "test",
            "access", "credentials", "provisioning")  # the last three: admin_access.py
EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
CSV_COLUMNS = ("mac", "server", "model", "name", "extension")
TIMEOUT = 30.0
MAX_SHOWN = 5  # details listed in an error line


class AdminError(Exception):
    """A failure to report as one line (exit code 1)."""


class DaemonError(AdminError):
    """The daemon answered with an error: its status, message and details."""

    def __init__(self, status: int, error: str, details: list[dict[str, Any]]) -> None:
        self.status, self.error, self.details = status, error, details
        super().__init__(self.describe())

    def describe(self, where: Callable[[int], str] = lambda i: f"event {i}") -> str:
        """``daemon answered 400: invalid event: event 0: mac: must be …``."""
        text = f"daemon answered {self.status}: {self.error}"
        parts = []
        for detail in self.details[:MAX_SHOWN]:
            index, field = detail.get("index"), detail.get("field")
            place = where(index) if isinstance(index, int) else ""
            prefix = f"{place}: " if place else ""
            prefix += f"{field}: " if field else ""
            parts.append(f"{prefix}{detail.get('message', '')}")
        if len(self.details) > MAX_SHOWN:
            parts.append(f"and {len(self.details) - MAX_SHOWN} more")
        if parts:
            text += ": " + "; ".join(parts)
        if self.status == 401:
            text += " (the token is api_token in rps.ini or RPS_GENERAL_API_TOKEN)"
        return text


class DaemonClient:
    """A small synchronous client for the daemon's API."""

    def __init__(self, url: str, token: str = "", *, timeout: float = TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                    transport=transport)
        self.timeout = timeout

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: Any = None) -> Any:
        """The JSON answer; :class:`AdminError` when unreachable or answering an error."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._client.request(method, path, params=query, json=body)
        except httpx.TimeoutException:
            raise AdminError(f"the daemon at {self.url} did not answer within "
                             f"{self.timeout:g}s") from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise AdminError(f"cannot reach the daemon at {self.url}: {reason} "
                             "(is it running? --url sets the address)") from None
        if response.status_code >= 400:
            raise _daemon_error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise AdminError(f"the daemon at {self.url} answered {response.status_code} "
                             "with no JSON (is --url the rps-service API?)") from None


def _daemon_error(response: httpx.Response) -> DaemonError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        details = body.get("details")
        return DaemonError(response.status_code, body["error"],
                           details if isinstance(details, list) else [])
    text = " ".join(response.text.split())[:200] or response.reason_phrase
    return DaemonError(response.status_code, text, [])


# -- where the daemon is ----------------------------------------------------------------


def daemon_url(general: GeneralSettings) -> str:
    """``http://host:port`` of the listener, reachable from this machine."""
    host = general.listen
    if host == "0.0.0.0":  # noqa: S104 (reading the config, not binding)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{general.port}"


def _target(args: argparse.Namespace) -> tuple[str, str]:
    """URL and token: from rps.ini, ``--url`` winning; with ``--url`` the file may be absent."""
    path = find_config(getattr(args, "config", None))
    if args.url and not path.exists():
        return args.url, os.environ.get("RPS_GENERAL_API_TOKEN", "")
    general = load_settings(path).general
    return args.url or daemon_url(general), general.api_token.get_secret_value()


# -- output -----------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned by their widest cell; ``-`` for empty cells."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [list(headers), *cells]]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return " ".join(str(value).split())


def _time(value: Any) -> str:
    # 2026-11-26T10:20:41Z → 2026-11-26 10:20:41 (UTC, like the API)
    return str(value).replace("T", " ").removesuffix("Z") if value else "-"


def _print_json(body: Any) -> None:
    print(json.dumps(body, indent=2, ensure_ascii=False))


# -- commands ---------------------------------------------------------------------------


def cmd_events(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("GET", "/events", params={"state": args.state, "limit": args.limit,
                                                  "before": args.before})
    if args.json:
        _print_json(body)
        return EXIT_OK
    events = body.get("events", [])
    if not events:
        print("No events.")
        return EXIT_OK
    print(table(
        ("ID", "STATE", "ACTION", "PROVIDER", "MAC", "SERVER", "ATTEMPTS", "UPDATED (UTC)",
         "LAST ERROR"),
        [(e["id"], e["state"], e["action"], e["provider"], e["mac"], e["server"],
          e["attempts"], _time(e.get("updated_at")), e.get("last_error")) for e in events],
    ))
    return EXIT_OK


def cmd_retry(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("POST", f"/events/{args.id}/retry")
    if args.json:
        _print_json(body)
    else:
        print(f"Event {args.id} re-queued (state {body.get('state', 'pending')}).")
    return EXIT_OK


def cmd_devices(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("GET", "/devices", params={
        "server": args.server, "provider": args.provider, "status": args.status,
        "mac": args.mac, "limit": args.limit,
    })
    if args.json:
        _print_json(body)
        return EXIT_OK
    devices = body.get("devices", [])
    if not devices:
        print("No devices.")
        return EXIT_OK
    print(table(
        ("PROVIDER", "MAC", "SERVER", "STATUS", "MODEL", "NAME", "EXTENSION",
         "REGISTERED (UTC)", "LAST MESSAGE"),
        [(d["provider"], d["mac"], d["server"], d["status"], d.get("model"), d.get("name"),
          d.get("extension"), _time(d.get("registered_at")), d.get("last_message"))
         for d in devices],
    ))
    return EXIT_OK


def cmd_test(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("POST", f"/providers/{args.provider}/test", body={"server": args.server})
    ok = bool(body.get("ok"))
    if args.json:
        _print_json(body)
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
    if args.json:
        _print_json(body)
        return EXIT_OK
    for item in body.get("events", []):
        note = " (duplicate key: not stored again)" if item.get("duplicate") else ""
        print(f"Event {item['id']} accepted: {item['action']} {item['provider']} "
              f"{item['mac']} server {item['server']}{note}")
    return EXIT_OK


def _event(args: argparse.Namespace, mac: str, row: dict[str, str]) -> dict[str, Any]:
    """One event: the row's cells, else the command line's options."""
    event: dict[str, Any] = {"action": args.action, "provider": args.provider, "mac": mac}
    server = row.get("server") or args.server
    if server is not None:
        event["server"] = int(server)
    for field in ("model", "name", "extension"):
        value = row.get(field) or getattr(args, field)
        if value:
            event[field] = value
    if getattr(args, "key", None):
        event["key"] = args.key
    return event


def read_csv(path: Path, args: argparse.Namespace) -> tuple[list[int], list[dict[str, Any]]]:
    """Events from a CSV of ``mac[,server,model,name,extension]``, checked before any send.

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
        _print_json({"accepted": len(accepted), "duplicates": duplicates, "events": accepted})
    else:
        print(f"Accepted {len(accepted)} events from {args.csv} ({duplicates} duplicates).")
    return EXIT_OK


def _line_of(lines: list[int]) -> Callable[[int], str]:
    """A batch's event index → its CSV line, for the daemon's error details."""
    return lambda i: f"line {lines[i]}" if 0 <= i < len(lines) else f"event {i}"


HANDLERS: dict[str, Callable[[DaemonClient, argparse.Namespace], int]] = {
    "events": cmd_events, "retry": cmd_retry, "devices": cmd_devices, "send": cmd_send,
    "test": cmd_test,
}


# -- argument parsing -------------------------------------------------------------------


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1 (got {value!r})")
    return number


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the admin subcommands to the ``rps-service`` parser's subparsers."""
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--url", help="the daemon's API (default: from listen/port in rps.ini)")
    client.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    parents = [common, client]

    p = sub.add_parser("events", parents=parents, help="list events (newest first)")
    p.add_argument("--state", choices=EVENT_STATES)
    p.add_argument("--limit", type=_positive, default=50, help="at most N (default 50)")
    p.add_argument("--before", type=_positive, help="only events with an id below this")

    p = sub.add_parser("retry", parents=parents, help="re-queue a failed event")
    p.add_argument("id", type=_positive, help="the event id")

    p = sub.add_parser("devices", parents=parents, help="list devices as the GUI shows them")
    p.add_argument("--server", type=_positive)
    p.add_argument("--provider")
    p.add_argument("--status", choices=DEVICE_STATUSES)
    p.add_argument("--mac")
    p.add_argument("--limit", type=_positive, default=1000)

    p = sub.add_parser("send", parents=parents,
                       help="post an add/remove/update event, or many from a CSV file")
    p.add_argument("action", choices=("add", "remove", "update"))
    p.add_argument("mac", nargs="?", help="the device's MAC (or --csv FILE)")
    p.add_argument("--csv", metavar="FILE",
                   help="one event per line: mac[,server,model,name,extension]")
    p.add_argument("--provider", default="snom", help="default: snom")
    p.add_argument("--server", type=_positive, help="tenant server (default 1)")
    p.add_argument("--model")
    p.add_argument("--name")
    p.add_argument("--extension")
    p.add_argument("--key", help="idempotency key (single event only)")

    p = sub.add_parser("test", parents=parents, help="check a provider's API keys now")
    p.add_argument("provider", help="e.g. snom")
    p.add_argument("--server", type=_positive, default=1, help="tenant server (default 1)")

    from rps_service import admin_access  # it builds on this module

    admin_access.add_commands(sub, parents, _positive)


def main(args: argparse.Namespace) -> int:
    """Run one admin command; the exit code."""
    if args.command == "send" and bool(args.mac) == bool(args.csv):
        print("rps-service send: give a MAC or --csv FILE (not both)", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "send" and args.csv and args.key:
        print("rps-service send: --key is for a single event, not --csv", file=sys.stderr)
        return EXIT_CONFIG
    try:
        url, token = _target(args)
    except ConfigError as exc:
        print(f"rps-service: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with DaemonClient(url, token) as client:
            handler = HANDLERS.get(args.command) or args.handler
            return int(handler(client, args))
    except AdminError as exc:
        print(f"rps-service {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
