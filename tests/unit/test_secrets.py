"""Sealing secrets (store/secrets.py) and the key file (keyfile.py), without a database."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rps_service import keyfile
from rps_service.config import GeneralSettings
from rps_service.keyfile import KeyFileError
from rps_service.store.secrets import (
    KEY_BYTES,
    Cell,
    ForeignKeyError,
    SecretBox,
    SecretError,
    new_key,
    sealed_key_id,
)

DEVICE = Cell("rps_devices", "http_password", ("snom", "000413ABCDEF"))
BOX = SecretBox(bytes(range(KEY_BYTES)))


@given(st.text(min_size=1, max_size=300))
def test_any_text_comes_back(value: str) -> None:
    assert BOX.open(BOX.seal(value, DEVICE), DEVICE) == value


def test_the_format_names_the_key_and_every_seal_differs() -> None:
    first, second = BOX.seal("pw-123456", DEVICE), BOX.seal("pw-123456", DEVICE)
    assert first.startswith(f"rps1:{BOX.key_id}:") and sealed_key_id(first) == BOX.key_id
    assert first != second  # a fresh nonce each time: equal passwords look different
    assert sealed_key_id("pw-123456") is None
    assert len(BOX.key_id) == 8 and BOX.key_id not in repr(bytes(range(KEY_BYTES)))


@pytest.mark.parametrize("elsewhere", [
    Cell("rps_devices", "http_password", ("snom", "000413ABCDE0")),  # another device
    Cell("rps_devices", "http_password", ("yealink", "000413ABCDEF")),  # another provider
    Cell("rps_devices", "url_key", ("snom", "000413ABCDEF")),  # another column
    Cell("rps_servers", "http_password", ("snom", "000413ABCDEF")),  # another table
])
def test_a_sealed_value_opens_only_where_it_was_sealed(elsewhere: Cell) -> None:
    sealed = BOX.seal("pw-123456", DEVICE)
    with pytest.raises(SecretError, match="does not open"):
        BOX.open(sealed, elsewhere)


def test_an_altered_value_does_not_open() -> None:
    sealed = BOX.seal("pw-123456", DEVICE)
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    for damaged in (flipped, sealed[:-4], BOX.tag + "A" * 40):
        with pytest.raises(SecretError, match="does not open"):
            BOX.open(damaged, DEVICE)


def test_another_key_is_named_not_tried() -> None:
    other = SecretBox(new_key())
    sealed = other.seal("pw-123456", DEVICE)
    with pytest.raises(ForeignKeyError) as caught:
        BOX.open(sealed, DEVICE)
    assert caught.value.key_id == other.key_id and other.key_id in str(caught.value)
    with pytest.raises(SecretError, match="is not sealed"):
        BOX.open("pw-123456", DEVICE)


def test_lookup_hashes_depend_on_the_key_and_the_purpose() -> None:
    key = "0123456789ab" + "k" * 24
    found = BOX.lookup("url_key", key)
    assert found == SecretBox(bytes(range(KEY_BYTES))).lookup("url_key", key)
    assert len(found) == 64 and key not in found and key[:12] not in found
    assert found != SecretBox(new_key()).lookup("url_key", key)
    assert found != BOX.lookup("other", key)


def test_the_key_file_is_made_once_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secret.key"
    key = keyfile.create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keyfile.read_key(path) == key and len(key) == KEY_BYTES
    # A second creator (another instance starting at the same moment) gets the same key.
    assert keyfile.create_key(path) == key
    assert keyfile.read_key(path) == key
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"]  # no temp files


@pytest.mark.parametrize("content", [b"", b"not a key\n", keyfile.encode(new_key())[:-5]])
def test_a_file_that_is_not_a_key_says_so(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match="not a key file"):
        keyfile.read_key(path)


def test_an_unreadable_key_file_says_why(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.mkdir()
    with pytest.raises(KeyFileError, match="cannot read it: is a directory"):
        keyfile.read_key(path)


def test_a_daemons_shared_lock_keeps_a_rotation_out(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    key = keyfile.create_key(path)
    first = keyfile.lock(path, exclusive=False)
    second = keyfile.lock(path, exclusive=False)  # several daemons may share the file
    assert first is not None and second is not None and first[1] == second[1] == key
    assert keyfile.lock(path, exclusive=True) is None
    os.close(first[0])
    os.close(second[0])
    rotation = keyfile.lock(path, exclusive=True)
    assert rotation is not None
    assert keyfile.lock(path, exclusive=False) is None  # and a daemon waits for it
    os.close(rotation[0])


def test_a_new_key_takes_the_files_place_with_the_old_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    old = keyfile.create_key(path)
    new = keyfile.stage_new_key(path)
    assert keyfile.read_key(path) == old and keyfile.read_key(keyfile.new_path(path)) == new
    keyfile.swap_in_new_key(path)
    assert keyfile.read_key(path) == new
    assert keyfile.read_key(keyfile.old_path(path)) == old
    assert not keyfile.new_path(path).exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keyfile.drop_old_key(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]


def test_the_key_defaults_beside_an_sqlite_database(tmp_path: Path) -> None:
    general = GeneralSettings.model_validate({"database": f"sqlite:///{tmp_path}/db/rps.db"})
    assert general.secret_key_path == tmp_path / "db" / "secret.key"
    general = GeneralSettings.model_validate({"database": "mysql://u@h/rps"})
    assert general.secret_key_path == Path("/var/lib/rps/secret.key")
    general = GeneralSettings.model_validate({"database": "mysql://u@h/rps",
                                              "secret_key_file": "/etc/rps/key"})
    assert general.secret_key_path == Path("/etc/rps/key")
