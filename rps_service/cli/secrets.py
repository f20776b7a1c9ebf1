"""``rps-service secrets rotate``: seal every stored secret anew with a new key.

Offline: it opens the database itself, and refuses while a daemon of this host holds the key
file (docs/secrets.md says what to do with several hosts). Run it again to finish one that
was cut short.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from rps_service.config import Settings
from rps_service.keyring import KeyringError, Rotated, rotate
from rps_service.store import StoreUnavailable, create_store

EXIT_OK, EXIT_ERROR = 0, 1
_SHOWN = 10  # refused values listed; the rest counted


def add_commands(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                 parents: Sequence[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("secrets", parents=list(parents),
                           help="the key the database's secrets are sealed with")
    commands = group.add_subparsers(dest="secrets_command", required=True)
    commands.add_parser("rotate", parents=list(parents),
                        help="seal every secret anew with a new key (stop the daemon first)")


def run(settings: Settings) -> int:
    """``secrets rotate``; the exit code."""
    return asyncio.run(_rotate(settings))


async def _rotate(settings: Settings) -> int:
    from rps_service.service import database_error

    general = settings.general
    path = general.secret_key_path
    store = create_store(general.database)
    try:
        await store.open()
        await store.migrate()
        done = await rotate(store, path)
    except KeyringError as exc:
        print(f"rps-service secrets rotate: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (StoreUnavailable, OSError) as exc:
        print(f"rps-service secrets rotate: {database_error(general.database, exc)}",
              file=sys.stderr)
        return EXIT_ERROR
    finally:
        await store.close()
    _report(str(path), done)
    return EXIT_OK


def _report(path: str, done: Rotated) -> None:
    print(f"{path}: key {done.old} replaced by key {done.new}; {done.count} secrets sealed "
          f"anew; the old key is deleted (database backups made before now need it)")
    if done.refused:
        print(f"rps-service secrets rotate: {len(done.refused)} stored values could not be "
              "opened and were left as they were (store them again through the API):",
              file=sys.stderr)
        for line in done.refused[:_SHOWN]:
            print(f"  {line}", file=sys.stderr)
        if len(done.refused) > _SHOWN:
            print(f"  … and {len(done.refused) - _SHOWN} more", file=sys.stderr)
