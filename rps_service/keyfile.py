"""The secret key file (``[general] secret_key_file``): made once, mode 0600, never overwritten.

It holds one line: the 32-byte key in URL-safe base64. A daemon holds a shared lock on it
while it runs; ``rps-service secrets rotate`` takes an exclusive one, so a rotation and a
daemon of this host never use the file at the same time (docs/secrets.md). Every file is
written whole to a temporary name, flushed to disk, then linked or renamed into place, so
a crash never leaves half a key behind.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
from pathlib import Path

from rps_service.store.secrets import KEY_BYTES, new_key


class KeyFileError(Exception):
    """The key file cannot be used; the message says why (the caller names the file)."""


def encode(key: bytes) -> bytes:
    return base64.urlsafe_b64encode(key) + b"\n"


def decode(data: bytes) -> bytes:
    """The key in a key file's content."""
    try:
        key = base64.urlsafe_b64decode(data.strip())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"not a key file (one line of {len(encode(new_key())) - 1} "
                           "base64 characters expected)")
    return key


def old_path(path: Path) -> Path:
    """Where a rotation keeps the key it replaces until every secret is sealed anew."""
    return path.with_name(path.name + ".old")


def new_path(path: Path) -> Path:
    """Where a rotation writes the new key before it takes the file's place."""
    return path.with_name(path.name + ".new")


def read_key(path: Path) -> bytes:
    """The key in ``path``; FileNotFoundError when there is none."""
    try:
        return decode(path.read_bytes())
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot read it: {_why(exc)}") from exc


def create_key(path: Path) -> bytes:
    """Write a new key to ``path`` (mode 0600) and return it; when another process made
    the file first, its key (the file is never overwritten)."""
    key = new_key()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, encode(key), replace=False)
    except FileExistsError:
        return read_key(path)
    except OSError as exc:
        raise KeyFileError(f"cannot create it: {_why(exc)}") from exc
    return key


def stage_new_key(path: Path) -> bytes:
    """A rotation's first step: a new key written to ``<file>.new`` (replacing one a crash
    left there: nothing was ever sealed with it)."""
    key = new_key()
    try:
        _write(new_path(path), encode(key), replace=True)
    except OSError as exc:
        raise KeyFileError(f"cannot write {new_path(path)}: {_why(exc)}") from exc
    return key


def swap_in_new_key(path: Path) -> None:
    """Keep the current key as ``<file>.old`` (a second name for the same file), then put
    ``<file>.new`` in its place: at every moment both keys are on disk."""
    try:
        if not old_path(path).exists():
            os.link(path, old_path(path))
            _sync_folder(path)
        os.replace(new_path(path), path)
        _sync_folder(path)
    except OSError as exc:
        raise KeyFileError(f"cannot replace it: {_why(exc)}") from exc


def drop_old_key(path: Path) -> None:
    """The rotation's last step: the replaced key is gone."""
    with contextlib.suppress(FileNotFoundError):
        old_path(path).unlink()
    _sync_folder(path)


def lock(path: Path, *, exclusive: bool) -> tuple[int, bytes] | None:
    """Open ``path``, lock it (shared or exclusive) and read its key; None when another
    process holds a lock that conflicts. The lock lasts until the descriptor is closed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot open it: {_why(exc)}") from exc
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        return fd, decode(os.read(fd, 4096))
    except BaseException:
        os.close(fd)
        raise


def _write(path: Path, data: bytes, *, replace: bool) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if the file exists: never overwritten
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _sync_folder(path)


def _sync_folder(path: Path) -> None:
    # A rename or link is durable only once the folder is flushed too.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
