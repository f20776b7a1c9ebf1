"""Admin commands for what operators otherwise need curl or SQL for: a device's access
details, a provider's API credentials per server, a tenant's provisioning details.

``rps-service access PROVIDER MAC``, ``credentials set|show``, ``provisioning set|show``,
through the daemon's API like the other admin commands (:mod:`rps_service.cli.client`). Secrets
are never taken from the command line, where shell history and ``ps`` would keep them: a
credential given as ``KEY=-`` and the ``--password-stdin`` of ``provisioning set`` are read
from stdin (one line each; asked for without echo on a terminal).
"""

from __future__ import annotations

import argparse
from typing import Any

from rps_service.cli.client import (
    EXIT_OK,
    AdminError,
    DaemonClient,
    credentials_body,
    mac_arg,
    pairs_text,
    positive,
    print_json,
    put,
    read_secret,
    table,
)


def cmd_access(client: DaemonClient, args: argparse.Namespace) -> int:
    body = client.call("GET", f"/devices/{args.provider}/{mac_arg(args.mac)}/access")
    if args.field:
        # One value alone, for a shell variable: URL=$(rps-service access … --field url).
        value = body.get(args.field)
        if value is None:
            raise AdminError(f"{args.field}: none for this device (a URL-key vendor's phone "
                             "has only a URL)")
        print(value)
    elif args.json:
        print_json(body)
    elif body.get("username") is None and body.get("password") is None:
        print(table(("URL",), [(body.get("url"),)]))  # the URL key is in it
    else:
        print(table(("URL", "USERNAME", "PASSWORD"),
                    [(body.get("url"), body.get("username"), body.get("password"))]))
    return EXIT_OK


def cmd_credentials(client: DaemonClient, args: argparse.Namespace) -> int:
    path = f"/providers/{args.provider}/credentials/{args.server}"
    if args.verb == "show":
        return _show(client, path, args.json)
    body = credentials_body(args.pairs, args.provisioning_url)
    put(client, path, body)
    what = "Credentials" if set(body) != {"provisioning_url"} else "Provisioning URL"
    return _stored(args.json, {"provider": args.provider, "server": args.server},
                   f"{what} stored for {args.provider} server {args.server}.")


def cmd_provisioning(client: DaemonClient, args: argparse.Namespace) -> int:
    path = f"/servers/{args.server}/provisioning"
    if args.verb == "show":
        return _show(client, path, args.json)
    password = read_secret("http_password")
    put(client, path, {"prov_url": args.prov_url, "http_user": args.user,
                        "http_password": password})
    return _stored(args.json, {"server": args.server},
                   f"Provisioning details stored for server {args.server}.")


def _show(client: DaemonClient, path: str, as_json: bool) -> int:
    shown = client.call("GET", path)
    if as_json:
        print_json(shown)
    else:
        print(pairs_text(shown))
    return EXIT_OK


def _stored(as_json: bool, what: dict[str, Any], text: str) -> int:
    if as_json:
        print_json({**what, "stored": True})
    else:
        print(text)
    return EXIT_OK


# -- argument parsing -------------------------------------------------------------------


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``access``, ``credentials`` and ``provisioning`` to the subparsers; ``parents``
    are the common options (``-c``) and the client's (``--url``, ``--json``)."""
    p = sub.add_parser("access", parents=parents,
                       help="show a device's access details (URL, username, password; "
                            "or the URL with its key)")
    p.add_argument("provider", help="e.g. snom")
    p.add_argument("mac", help="the device's MAC")
    p.add_argument("--field", choices=("url", "username", "password"),
                   help="print only this value (for scripts)")
    p.set_defaults(handler=cmd_access)

    p = sub.add_parser("credentials", help="set or show a provider's API keys for a server")
    verbs = p.add_subparsers(dest="verb", required=True)
    s = verbs.add_parser("set", parents=parents, help="store API keys (PUT)")
    s.add_argument("provider", help="e.g. snom")
    s.add_argument("server", type=positive, help="tenant server (1 in master mode)")
    s.add_argument("pairs", nargs="*", metavar="KEY=VALUE",
                   help="the provider's credential keys; KEY=- reads the value from stdin")
    s.add_argument("--provisioning-url",
                   help="this server's provisioning URL for phones (alone: stored on its "
                        "own, keeping the server's keys)")
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
