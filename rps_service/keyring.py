"""The key the database's secrets are sealed with: checked at start, rotated offline.

:func:`unlock` runs at every start, before anything is served: it reads the key file (made
at the first start), checks it against the database (a missing file, a wrong key or a
rotation cut short stop the start with one line naming the file), then seals what older
versions stored in clear (the data step). :func:`rotate` is ``rps-service secrets rotate``.
See docs/secrets.md for what an operator does with either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rps_service import keyfile
from rps_service.keyfile import KeyFileError
from rps_service.logs import get_logger
from rps_service.store import Store
from rps_service.store.sealing import Convert
from rps_service.store.secrets import Cell, SecretBox, SecretError, sealed_key_id
from rps_service.vendors import PROVIDERS

log = get_logger()

#: Each provider's secret credential keys: sealed inside ``rps_credentials.params``.
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    name: cls.settings_class.secret_keys() for name, cls in PROVIDERS.items()}
_ROTATE = "'rps-service secrets rotate'"


class KeyringError(Exception):
    """The secret key cannot be used; one line naming the file and what to do."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"[general] secret_key_file {path}: {reason}")


@dataclass
class Unlocked:
    """The daemon's key, and the shared lock it holds on the key file while it runs."""

    box: SecretBox
    fd: int = field(repr=False)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def unlock(store: Store, path: Path,
                 secret_keys: Mapping[str, Sequence[str]] = SECRET_KEYS) -> Unlocked:
    """Load (or make) the key, check it against the database, seal what is in clear."""
    if keyfile.old_path(path).exists():
        raise KeyringError(path, f"a key rotation did not finish ({keyfile.old_path(path)} "
                                 f"exists): run {_ROTATE} again to finish it")
    fd, key = await _open_or_create(store, path)
    try:
        box = SecretBox(key)
        registered = await _check(store, path, box)
        store.use_secrets(box, secret_keys)
        if registered != box.key_id:
            await store.register_key(box.key_id)
        try:
            sealed = await store.seal_plaintext()
        except SecretError as exc:
            raise KeyringError(path, f"cannot seal the secrets stored in clear: {exc}") from exc
    except BaseException:
        os.close(fd)
        raise
    if sealed:
        log.info("Secrets sealed", component="DATABASE", count=sealed, key=box.key_id)
    return Unlocked(box, fd)


async def _open_or_create(store: Store, path: Path) -> tuple[int, bytes]:
    try:
        return _lock(path, exclusive=False)
    except FileNotFoundError:
        pass
    found = await store.sealed_with_other_key(None)
    if found is not None:
        raise KeyringError(path, f"missing, and the database holds secrets sealed with key "
                                 f"{found[0]} ({found[1]}): restore the file from its backup")
    try:
        keyfile.create_key(path)
    except KeyFileError as exc:
        raise KeyringError(path, str(exc)) from exc
    log.info("Secret key created", component="MAIN", path=str(path))
    return _lock(path, exclusive=False)


def _lock(path: Path, *, exclusive: bool) -> tuple[int, bytes]:
    try:
        held = keyfile.lock(path, exclusive=exclusive)
    except KeyFileError as exc:
        raise KeyringError(path, str(exc)) from exc
    if held is None and exclusive:
        raise KeyringError(path, "in use by a running daemon: stop it first "
                                 "(systemctl stop rps-service)")
    if held is None:
        raise KeyringError(path, f"locked by {_ROTATE}: start the daemon once it has finished")
    return held


async def _check(store: Store, path: Path, box: SecretBox) -> str | None:
    """The key id the database is registered to; raises when ``box`` cannot be its key."""
    registered = await store.registered_key()
    if registered is not None and registered[1] is not None:
        raise KeyringError(path, f"a key rotation from key {registered[1]} to key "
                                 f"{registered[0]} is running or did not finish: let "
                                 f"{_ROTATE} finish, or run it again where it ran")
    found = await store.sealed_with_other_key(box.key_id)
    if found is not None:
        raise KeyringError(path, f"wrong key: the database's secrets are sealed with key "
                                 f"{found[0]}, this file holds key {box.key_id} (restore the "
                                 "right file from its backup)")
    if registered is not None and registered[0] != box.key_id:
        # Nothing is sealed with the registered key: losing it cost nothing.
        log.warning("Secret key replaced", component="MAIN", key=box.key_id,
                    previous=registered[0])
    return registered[0] if registered else None


@dataclass(frozen=True)
class Rotated:
    """What a rotation did."""

    old: str  # key ids
    new: str
    count: int  # secrets sealed anew
    refused: list[str]  # values that could not be opened, left as they were


async def rotate(store: Store, path: Path,
                 secret_keys: Mapping[str, Sequence[str]] = SECRET_KEYS) -> Rotated:
    """Seal every secret anew with a new key; the daemon must be stopped (the key file's
    lock tells on this host).

    Crash-safe, and run again to finish one cut short: the new key is on disk before
    anything is sealed with it, the old one stays as ``<file>.old`` until nothing needs it,
    each row is re-sealed in a transaction of its batch, and the database records the
    rotation while it runs, so no daemon starts in the middle of it.
    """
    resuming = keyfile.old_path(path).exists()
    try:
        fd, key = _lock(keyfile.old_path(path) if resuming else path, exclusive=True)
    except FileNotFoundError:
        raise KeyringError(path, "missing: nothing to rotate (a daemon makes the key at its "
                                 "first start; restore a lost one from its backup)") from None
    try:
        old = SecretBox(key)
        if resuming:
            new = _resume(path, old)
        else:
            await _prepare(store, path, old, secret_keys)
            try:
                keyfile.stage_new_key(path)
                keyfile.swap_in_new_key(path)
                new = SecretBox(keyfile.read_key(path))
            except KeyFileError as exc:
                raise KeyringError(path, str(exc)) from exc
        await store.register_key(new.key_id, previous=old.key_id)
        store.use_secrets(new, secret_keys)
        done = await store.reseal(_opened_with(old))
        # A second pass finds what a daemon of another host wrote during the first.
        again = await store.reseal(_opened_with(old))
        await store.register_key(new.key_id)
        keyfile.drop_old_key(path)
    finally:
        os.close(fd)
    return Rotated(old.key_id, new.key_id, done.count + again.count, again.refused)


async def _prepare(store: Store, path: Path, old: SecretBox,
                   secret_keys: Mapping[str, Sequence[str]]) -> None:
    """Before a rotation starts: the database must be sealed with the old key, wholly."""
    registered = await _check(store, path, old)
    store.use_secrets(old, secret_keys)
    if registered != old.key_id:
        await store.register_key(old.key_id)
    try:
        await store.seal_plaintext()
    except SecretError as exc:
        raise KeyringError(path, f"cannot seal the secrets stored in clear: {exc}") from exc


def _resume(path: Path, old: SecretBox) -> SecretBox:
    """A rotation cut short: the new key is the file's, unless the swap never happened."""
    try:
        current = SecretBox(keyfile.read_key(path))
    except FileNotFoundError:
        current = old
    except KeyFileError as exc:
        raise KeyringError(path, str(exc)) from exc
    if current.key_id != old.key_id:
        return current
    try:
        if not keyfile.new_path(path).exists():
            keyfile.stage_new_key(path)  # nothing was sealed with a key never put in place
        keyfile.swap_in_new_key(path)
        return SecretBox(keyfile.read_key(path))
    except KeyFileError as exc:
        raise KeyringError(path, str(exc)) from exc


def _opened_with(old: SecretBox) -> Convert:
    """What a rotation re-seals: values sealed with the old key (one in clear now was put
    there behind the daemon's back, and is left for the operator, as is one that does not
    open)."""

    def convert(value: str, cell: Cell) -> str:
        if sealed_key_id(value) is None:
            raise SecretError(f"{cell} holds a value in clear where only a sealed one "
                              "belongs")
        return old.open(value, cell)

    return convert
