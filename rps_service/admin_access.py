"""Admin commands for what operators otherwise need curl or SQL for: a device's access
details, a provider's API credentials per server, a tenant's provisioning details.

``rps-service access PROVIDER MAC``, ``credentials set|show``, ``provisioning set|show``,
through the daemon's API like the other admin commands (:mod:`rps_service.admin`). Secrets
are never taken from the command line, where shell history and ``ps`` would keep them: a
credential given as ``KEY=-`` and the ``--password-stdin`` of ``provisioning set`` are read
from stdin (one line each; asked for without echo on a terminal).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from typing import Any

from rps_service.admin import (
    EXIT_OK,
    AdminError,
    DaemonClient,
    DaemonError,
    _print_json,
    table,
)
from rps_service.models import normalize_mac

COMMANDS = ("access", "credentials", "provisioning")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_BOOLEANS = {"true": True, "false": False}


def read_secret(prompt: str) -> str:
    """One line from stdin (without its line end), or typed without echo on a terminal."""
    if sys.stdin.isatty():
        return getpass.getpass(f"{prompt}: ")
    line = sys.stdin.readline()
    if not line:
        raise AdminError(f"{prompt}: nothing on stdin")
    return line.removesuffix("\n").removesuffix("\r")


def credentials_body(pairs: list[str], provisioning_url: str | None) -> dict[str, Any]:
    """``KEY=VALUE`` words as the JSON body of PUT /providers/{p}/credentials/{s}.

    Values are strings, but ``true``/``false`` are booleans; ``KEY=-`` reads the value from
    stdin. Which keys a provider takes is the daemon's to say: they are passed through.
    """
    body: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise AdminError(f"{pair.split('=')[0]!r}: give KEY=VALUE (KEY=- reads the value "
                             "from stdin)")
        if key in body:
            raise AdminError(f"{key}: given twice")
        if value == "-":
            body[key] = read_secret(key)
        else:
            body[key] = _BOOLEANS.get(value, value)
    if not body:
        raise AdminError("give the credentials as KEY=VALUE (e.g. access_key_id=… "
                         "access_key_secret=-)")
    if provisioning_url is not None:
        body["provisioning_url"] = provisioning_url
    return body


def _pairs(body: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """A JSON object as a two-column table, for people."""
    return table(("KEY", "VALUE"), [(k, _shown(v)) for k, v in body.items() if k not in skip])


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "-" if value is None or value == "" else str(value)


def _mac(value: str) -> str:
    try:
        return normalize_mac(value)
    except ValueError as exc:
        raise AdminError(f"mac {value!r}: {exc}") from None


def _put(client: DaemonClient, path: str, body: dict[str, Any]) -> None:
    try:
        client.call("PUT", path, body=body)
    except DaemonError as err:  # one body, not a batch: no "event 0:" in the details
        raise AdminError(err.describe(lambda _: "")) from None


# -- commands ---------------------------------------------------------------------------


def cmd_access(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("GET", f"/devices/{args.provider}/{_mac(args.mac)}/access")
    if args.json:
        _print_json(body)
    else:
        print(table(("URL", "USERNAME", "PASSWORD"),
                    [(body.get("url"), body.get("username"), body.get("password"))]))
    return EXIT_OK


def cmd_credentials(client: DaemonClient, args: argparse.Namespace) -> int:
    path = f"/providers/{args.provider}/credentials/{args.server}"
    if args.verb == "show":
        return _show(client, path, args.json)
    _put(client, path, credentials_body(args.pairs, args.provisioning_url))
    return _stored(args.json, {"provider": args.provider, "server": args.server},
                   f"Credentials stored for {args.provider} server {args.server}.")


def cmd_provisioning(client: DaemonClient, args: argparse.Namespace) -> int:
    path = f"/servers/{args.server}/provisioning"
    if args.verb == "show":
        return _show(client, path, args.json)
    password = read_secret("http_password")
    _put(client, path, {"prov_url": args.prov_url, "http_user": args.user,
                        "http_password": password})
    return _stored(args.json, {"server": args.server},
                   f"Provisioning details stored for server {args.server}.")


def _show(client: DaemonClient, path: str, as_json: bool) -> int:
    shown = client.call("GET", path)
    if as_json:
        _print_json(shown)
    else:
        print(_pairs(shown))
    return EXIT_OK


def _stored(as_json: bool, what: dict[str, Any], text: str) -> int:
    if as_json:
        _print_json({**what, "stored": True})
    else:
        print(text)
    return EXIT_OK


# -- argument parsing -------------------------------------------------------------------


def add_commands(sub: Any, parents: list[argparse.ArgumentParser],
                 positive: Any) -> None:
    """Add ``access``, ``credentials`` and ``provisioning`` to the subparsers; ``parents``
    are the common options (``-c``) and the client's (``--url``, ``--json``)."""
    p = sub.add_parser("access", parents=parents,
                       help="show a device's access details (URL, username, password)")
    p.add_argument("provider", help="e.g. snom")
    p.add_argument("mac", help="the device's MAC")
    p.set_defaults(handler=cmd_access)

    p = sub.add_parser("credentials", help="set or show a provider's API keys for a server")
    verbs = p.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("set", parents=parents, help="store API keys (PUT)")
    s.add_argument("provider", help="e.g. snom")
    s.add_argument("server", type=positive, help="tenant server (1 in master mode)")
    s.add_argument("pairs", nargs="*", metavar="KEY=VALUE",
                   help="the provider's credential keys; KEY=- reads the value from stdin")
    s.add_argument("--provisioning-url", help="this server's provisioning URL for phones")
    s = verbs.add_parser("show", parents=parents, help="show the stored keys (no secrets)")
    s.add_argument("provider")
    s.add_argument("server", type=positive)
    p.set_defaults(handler=cmd_credentials)

    # Here --url is the tenant's URL, so the daemon's address is --daemon-url.
    daemon = argparse.ArgumentParser(add_help=False)
    daemon.add_argument("--daemon-url", dest="url",
                        help="the daemon's API (default: from listen/port in rps.ini)")
    daemon.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p = sub.add_parser("provisioning",
                       help="set or show a tenant's regular provisioning URL and credentials")
    verbs = p.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("set", parents=[parents[0], daemon], help="store them (PUT)")
    s.add_argument("server", type=positive)
    s.add_argument("--url", dest="prov_url", required=True, help="the tenant's /prov/ URL")
    s.add_argument("--user", required=True, help="the HTTP user phones provision with")
    s.add_argument("--password-stdin", action="store_true", required=True,
                   help="read the HTTP password from stdin (never from the command line)")
    s = verbs.add_parser("show", parents=parents, help="show them (not the password)")
    s.add_argument("server", type=positive)
    p.set_defaults(handler=cmd_provisioning)
