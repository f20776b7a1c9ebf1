"""rps.ini: the shipped file, env overrides, error messages, secret masking, the DSN, the CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rps_service.cli import main
from rps_service.config import ConfigError, DatabaseUrl, load_settings, parse_database_url

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a config value under test, nothing binds
SHIPPED_INI = Path(__file__).resolve().parents[2] / "etc" / "rps.ini"


def _ini(tmp_path: Path, text: str, name: str = "rps.ini") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env or {})
    return str(info.value)


# --- the shipped file and defaults ---------------------------------------------------------


def test_shipped_ini_loads_with_spec_defaults() -> None:
    settings = load_settings(SHIPPED_INI, env={})
    general = settings.general
    assert settings.source == str(SHIPPED_INI)
    assert general.listen == "127.0.0.1"
    assert general.is_loopback
    assert general.port == 15777
    assert general.queuenum == 4
    assert general.queuecap == 100
    assert general.mode == "master"
    assert general.log_format == "text"
    assert general.log_level == "INFO"
    assert general.max_attempts == 8
    assert general.max_body == 1_048_576
    assert general.database.scheme == "sqlite"
    assert settings.provider("snom").enabled is True
    assert settings.provider("snom").api_url == "https://secure-provisioning.snom.com/api/v1/"
    assert settings.provider("snom").timeout == 30


def test_env_overrides_file_values() -> None:
    env = {"RPS_GENERAL_PORT": "16001", "RPS_SNOM_TIMEOUT": "5", "OTHER_PORT": "1"}
    settings = load_settings(SHIPPED_INI, env=env)
    assert settings.general.port == 16001
    assert settings.provider("snom").timeout == 5.0
    # Untouched values still come from the file.
    assert settings.general.queuenum == 4


@given(port=st.integers(min_value=1, max_value=65535))
def test_any_valid_port_from_env_is_taken(port: int) -> None:
    assert load_settings(SHIPPED_INI, env={"RPS_GENERAL_PORT": str(port)}).general.port == port


@given(port=st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
def test_any_out_of_range_port_from_env_is_refused(port: int) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(SHIPPED_INI, env={"RPS_GENERAL_PORT": str(port)})
    assert info.value.section == "general"
    assert info.value.key == "port"
    assert "RPS_GENERAL_PORT" in str(info.value)


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    settings = load_settings(_ini(tmp_path, "[general]\nlog_level = debug\n"), env={})
    assert settings.general.log_level == "DEBUG"


def test_keys_may_carry_inline_comments(tmp_path: Path) -> None:
    path = _ini(tmp_path, "[general]\nqueuenum = 7   ; seven queues\n")
    assert load_settings(path, env={}).general.queuenum == 7


# --- errors name file, section, key and reason ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "section", "key", "reason"),
    [
        ("[general]\n[telnet]\nport = 1\n", "telnet", "", "unknown section"),
        ("[general]\ncolour = blue\n", "general", "colour", "unknown key"),
        ("[general]\nqueuenum = four\n", "general", "queuenum", "valid integer"),
        ("[general]\nport = 70000\n", "general", "port", "less than or equal to 65535"),
        ("[general]\nport = 0\n", "general", "port", "greater than or equal to 1"),
        ("[snom]\nenabled = maybe\n", "snom", "enabled", "valid boolean"),
        ("[general]\nlog_level = verbose\n", "general", "log_level", "'DEBUG', 'INFO'"),
        ("[general]\nlog_format = xml\n", "general", "log_format", "'text' or 'json'"),
        ("[general]\nmode = slave\n", "general", "mode", "'master' or 'tenant'"),
        ("[general]\ndatabase = postgres://h/db\n", "general", "database", "sqlite:///"),
        ("[general]\nlisten = example.com\n", "general", "listen", "IP address"),
        ("[snom]\napi_url = ftp://x/\n", "snom", "api_url", "http"),
        # FDPS keeps host, port and path only: caught here, not by the first event.
        ("[fanvil]\nprovisioning_url = https://pbx.test/ztprov/{server}/?t=1\n", "fanvil",
         "provisioning_url", "without user, query (?...) or fragment (#...)"),
        ("[fanvil]\nprovisioning_url = https://pbx.test/ztprov/{mac}/\n", "fanvil",
         "provisioning_url", "must not contain {mac}"),
    ],
)
def test_bad_values_name_file_section_key_and_reason(
    tmp_path: Path, text: str, section: str, key: str, reason: str
) -> None:
    path = _ini(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: [{section}]")
    assert (info.value.section, info.value.key) == (section, key)
    if key:
        assert f"[{section}] {key}: " in message
    assert reason in message


def test_bad_value_echoes_the_value(tmp_path: Path) -> None:
    message = _error(_ini(tmp_path, "[general]\nqueuecap = lots\n"))
    assert "'lots'" in message


@pytest.mark.parametrize(
    "url",
    [
        "mysql://rps:hunter2secret@db.example.com/",  # no database name
        "mysql://rps:hunter2secret@db.example.com:notaport/pbxware",
        "mysql://rps:hunter2secret@db.example.com/pbx/ware",
        "postgres://rps:hunter2secret@db.example.com/pbxware",
    ],
)
def test_bad_database_url_never_shows_the_password(tmp_path: Path, url: str) -> None:
    path = _ini(tmp_path, f"[general]\ndatabase = {url}\n")
    for message in (_error(path), _error(_ini(tmp_path, "[general]\n", "e.ini"),
                                         {"RPS_GENERAL_DATABASE": url})):
        assert "[general] database: " in message
        assert "hunter2secret" not in message


def test_bad_value_from_env_names_the_variable(tmp_path: Path) -> None:
    path = _ini(tmp_path, "[general]\nport = 15777\n")
    message = _error(path, {"RPS_GENERAL_PORT": "eighty"})
    assert message.startswith(f"{path}: [general] port: ")
    assert "environment variable RPS_GENERAL_PORT" in message
    assert "'eighty'" in message


def test_unknown_key_from_env_is_refused(tmp_path: Path) -> None:
    message = _error(_ini(tmp_path, "[general]\n"), {"RPS_SNOM_COLOUR": "blue"})
    assert "[snom] colour: unknown key" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.ini"
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == f"{path}: file not found"


def test_duplicate_key(tmp_path: Path) -> None:
    message = _error(_ini(tmp_path, "[general]\nport = 15777\nport = 15778\n"))
    assert "[general] port: " in message
    assert "twice" in message


def test_duplicate_section(tmp_path: Path) -> None:
    message = _error(_ini(tmp_path, "[snom]\n[general]\n[snom]\n"))
    assert "[snom]" in message
    assert "twice" in message


def test_not_an_ini_file(tmp_path: Path) -> None:
    path = _ini(tmp_path, "port = 15777\n")
    message = _error(path)
    assert message.startswith(f"{path}: ")
    assert "not an INI file" in message


@pytest.mark.parametrize("listen", [ALL_INTERFACES, "10.1.2.3", "::"])
def test_non_loopback_listen_needs_api_token(tmp_path: Path, listen: str) -> None:
    path = _ini(tmp_path, f"[general]\nlisten = {listen}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert (info.value.section, info.value.key) == ("general", "listen")
    assert "api_token" in str(info.value)


def test_non_loopback_listen_with_api_token_is_allowed(tmp_path: Path) -> None:
    path = _ini(tmp_path, "[general]\nlisten = 0.0.0.0\napi_token = t0ken-abc\n")
    settings = load_settings(path, env={})
    assert settings.general.listen == ALL_INTERFACES
    assert not settings.general.is_loopback
    assert settings.general.api_token.get_secret_value() == "t0ken-abc"


def test_api_token_from_env_allows_non_loopback(tmp_path: Path) -> None:
    path = _ini(tmp_path, "[general]\nlisten = 0.0.0.0\n")
    settings = load_settings(path, env={"RPS_GENERAL_API_TOKEN": "t0ken-abc"})
    assert settings.general.api_token.get_secret_value() == "t0ken-abc"


# --- secrets stay out of repr/str ------------------------------------------------------------


def test_repr_and_str_never_show_secrets(tmp_path: Path) -> None:
    path = _ini(
        tmp_path,
        "[general]\nlisten = 0.0.0.0\napi_token = tok-SECRET-1\n"
        "database = mysql://rps:pw-SECRET-2@db.example.com:3307/pbxware\n"
        "[snom]\naccess_key_id = KEYID\naccess_key_secret = key-SECRET-3\n",
    )
    settings = load_settings(path, env={})
    assert settings.provider("snom").access_key_secret.get_secret_value() == "key-SECRET-3"
    assert settings.general.database.password == "pw-SECRET-2"
    snom = settings.provider("snom")
    for text in (repr(settings), str(settings), repr(settings.general), str(snom)):
        assert "SECRET" not in text
        assert "KEYID" in text or "pbxware" in text


# --- the database DSN ------------------------------------------------------------------------


def test_sqlite_relative_path() -> None:
    url = parse_database_url("sqlite:///rel/path.db")
    assert (url.scheme, url.path) == ("sqlite", "rel/path.db")
    assert url.display() == "sqlite:///rel/path.db"


def test_sqlite_absolute_path() -> None:
    url = parse_database_url("sqlite:////abs/path.db")
    assert (url.scheme, url.path) == ("sqlite", "/abs/path.db")
    assert url.display() == "sqlite:////abs/path.db"


def test_mysql_url_is_parsed_and_password_unquoted() -> None:
    url = parse_database_url("mysql://u:p%40ss@h:3307/db")
    assert url == DatabaseUrl(scheme="mysql", host="h", port=3307, user="u", password="p@ss",
                              name="db")
    assert url.display() == "mysql://u:***@h:3307/db"
    assert "p@ss" not in repr(url)
    assert "p%40ss" not in repr(url)


def test_mysql_url_defaults() -> None:
    url = parse_database_url("mysql://db.example.com/pbxware")
    assert (url.host, url.port, url.user, url.password, url.name) == (
        "db.example.com", 3306, "root", "", "pbxware")
    assert url.display() == "mysql://root@db.example.com:3306/pbxware"


@pytest.mark.parametrize(
    "value", ["sqlite:///", "sqlite://x.db", "mysql://h", "mysql://h/", "redis://h/0", ""]
)
def test_bad_database_urls_raise_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        parse_database_url(value)


@given(password=st.text(min_size=1, max_size=30))
def test_mysql_password_round_trips_when_quoted(password: str) -> None:
    from urllib.parse import quote

    url = parse_database_url(f"mysql://rps:{quote(password, safe='')}@h:3306/db")
    assert url.password == password
    assert url.display() == "mysql://rps:***@h:3306/db"


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI reads os.environ: make sure no RPS_* override from the caller leaks in."""
    for var in list(os.environ):
        if var.startswith("RPS_"):
            monkeypatch.delenv(var)
    yield


@pytest.mark.usefixtures("clean_env")
def test_check_config_bad_file_exits_2_with_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _ini(tmp_path, "[general]\nport = 99999\n")
    assert main(["check-config", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{path}: [general] port: " in err
    assert "65535" in err


@pytest.mark.usefixtures("clean_env")
def test_check_config_good_file_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _ini(tmp_path, "[general]\ndatabase = mysql://rps:pw-SECRET@h:3306/pbx\n")
    assert main(["check-config", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    # Nothing was contacted (h:3306 does not exist), and the line says so.
    assert out == f"{path}: OK (configuration only; database not contacted: use --connect)\n"
    assert "SECRET" not in out


@pytest.mark.usefixtures("clean_env")
def test_check_config_honours_config_before_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _ini(tmp_path, "[general]\nport = 99999\n")
    code = main(["-c", str(path), "check-config"])
    _, err = capsys.readouterr()
    assert f"{path}: [general] port: " in err
    assert code == 2
