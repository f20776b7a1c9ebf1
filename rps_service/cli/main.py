"""``rps-service``: run the daemon, check the config, create the schema, run the sandbox,
rotate the secret key, and the admin commands that talk to a running daemon
(:mod:`rps_service.cli.client`).

Exit codes: 0 clean stop, 2 configuration error, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from rps_service import __version__, loop
from rps_service.cli import access, events, fleet, timeline
from rps_service.cli import secrets as secrets_command
from rps_service.cli.client import AdminError, DaemonClient, safe_output, target
from rps_service.config import ConfigError, Settings, find_config, load_settings
from rps_service.logs import configure, get_logger
from rps_service.store import DatabaseMissing, StoreUnavailable, create_store

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
#: The admin commands, which talk to a running daemon through its API.
COMMAND_GROUPS = (events, access, fleet, timeline)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's own -c must not reset one given before the subcommand.
    common.add_argument("-c", "--config", default=argparse.SUPPRESS,
                        help="rps.ini to read (default: etc/rps.ini, then /etc/rps/rps.ini)")
    parser = argparse.ArgumentParser(prog="rps-service", parents=[common],
                                     description="Zero-touch provisioning daemon.")
    parser.add_argument("--version", action="version", version=f"rps-service {__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", parents=[common], help="run the daemon")
    check = sub.add_parser("check-config", parents=[common], help="validate rps.ini and exit")
    check.add_argument("--connect", action="store_true",
                       help="also open the database (creating and migrating nothing)")
    sub.add_parser("init-db", parents=[common], help="create or migrate the database schema")
    sub.add_parser("sandbox", add_help=False,
                   help="emulate every vendor's API locally, for trials "
                        "(see 'sandbox --help')")
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--url", help="the daemon's API (default: from listen/port in rps.ini)")
    client.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    for group in COMMAND_GROUPS:
        group.add_commands(sub, [common, client])
    secrets_command.add_commands(sub, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rps-service`` command."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["sandbox"]:
        from rps_service.sandbox.cli import main as sandbox_main

        return sandbox_main(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        # Help, not a daemon: a bare command typed to see what it does must not start one
        # (systemd's unit says "run"). Exit 0 like --help: help was what was asked for.
        parser.print_help()
        return EXIT_OK
    command = args.command
    if hasattr(args, "handler"):
        return _admin(args)
    path = find_config(getattr(args, "config", None))
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"rps-service: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if command == "check-config" and not args.connect:
        print(f"{path}: OK (configuration only; database not contacted: use --connect)")
        return EXIT_OK
    if command == "check-config":
        return asyncio.run(_check_database(path, settings))
    if command == "init-db":
        return asyncio.run(_init_db(settings))
    if command == "secrets":
        return secrets_command.run(settings)
    return _run(settings)


async def _check_database(path: Path, settings: Settings) -> int:
    """``check-config --connect``: open the database as a start would, change nothing."""
    from rps_service.service import database_error

    url = settings.general.database
    store = create_store(url)
    store.create_missing = False  # a check must not leave a root-owned file behind
    try:
        await store.open()
        version = await store.schema_version()
    except DatabaseMissing as exc:
        print(f"{path}: OK (database {url.display()}: {exc}; the daemon creates it at start)")
        return EXIT_OK
    except (StoreUnavailable, OSError) as exc:
        print(f"rps-service: check-config: {database_error(url, exc)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        await store.close()
    schema = f"schema at version {version}" if version else "no tables yet (made at start)"
    print(f"{path}: OK (database {url.display()}: connected, {schema})")
    return EXIT_OK


async def _init_db(settings: Settings) -> int:
    store = create_store(settings.general.database)
    try:
        await store.open()
        version = await store.migrate()
    except StoreUnavailable as exc:
        print(f"rps-service: database unavailable: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        await store.close()
    print(f"{settings.general.database.display()}: schema at version {version}")
    return EXIT_OK


def _run(settings: Settings) -> int:
    from rps_service.service import StartError, serve

    general = settings.general
    try:
        sink = configure(general.log_file, general.log_level, general.log_format)
    except OSError as exc:
        print(f"rps-service: cannot open log_file {general.log_file}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log = get_logger()
    log.info("Starting", component="MAIN", config=settings.source,
             database=general.database.display(), version=__version__)
    try:
        return loop.run(serve(settings, sink))
    except (StartError, StoreUnavailable, OSError) as exc:
        return _cannot_start(settings, str(exc))
    finally:
        sink.close()


def _cannot_start(settings: Settings, reason: str) -> int:
    """One line in rps.log and one on stderr (the same one when the log is stderr)."""
    get_logger().error("Cannot start", component="MAIN", err=reason)
    if settings.general.log_file != "-":
        print(f"rps-service: cannot start: {reason}", file=sys.stderr)
    return EXIT_ERROR


def _admin(args: argparse.Namespace) -> int:
    """Run one admin command against the daemon; the exit code."""
    with safe_output():  # the daemon's answers hold text from outside (text.py)
        return _admin_command(args)


def _admin_command(args: argparse.Namespace) -> int:
    if args.command == "send" and bool(args.mac) == bool(args.csv):
        print("rps-service send: give a MAC or --csv FILE (not both)", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "send" and args.csv and (args.key or args.wait):
        option = "--key" if args.key else "--wait"
        print(f"rps-service send: {option} is for a single event, not --csv", file=sys.stderr)
        return EXIT_CONFIG
    try:
        url, token = target(args)
    except ConfigError as exc:
        print(f"rps-service: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with DaemonClient(url, token) as client:
            return int(args.handler(client, args))
    except AdminError as exc:
        print(f"rps-service {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
