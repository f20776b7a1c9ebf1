"""rps.log (docs/logs.md): line shapes, levels, one line per event, secrets masked,
json, logrotate."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import mohawk.base
import pytest
import structlog

from rps_service.logs import LogFile, configure, get_logger

LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] (DEBUG|INFO|WARNING|ERROR) \([A-Za-z]+\): "
    r".+\.( [A-Z][A-Za-z]*=.*)?$"
)

Configure = Callable[..., LogFile]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """structlog's configuration and contextvars are global: leave them as we found them."""
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "log" / "rps.log"


@pytest.fixture
def configured(log_path: Path) -> Iterator[Configure]:
    """configure() writing to ``log_path``; every sink opened is closed after the test."""
    sinks: list[LogFile] = []

    def make(level: str = "INFO", fmt: str = "text") -> LogFile:
        sink = configure(log_file=str(log_path), level=level, fmt=fmt)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _body(line: str) -> str:
    """The line after ``[timestamp] ``."""
    assert line.startswith("[")
    return line.split("] ", 1)[1]


LOG_EXAMPLES: list[tuple[str, str, dict[str, Any], str]] = [
    ("info", "Listening", {"component": "LISTENER", "address": "127.0.0.1:15777"},
     "INFO (LISTENER): Listening. Address=127.0.0.1:15777"),
    ("info", "Distributing events", {"component": "DISTRIBUTOR", "num": 3},
     "INFO (DISTRIBUTOR): Distributing events. Num=3"),
    ("info", "Sending Request",
     {"component": "Snom", "mac": "000413ABCDEF",
      "url": "https://secure-provisioning.snom.com/api/v1/tokens/KEYID"},
     "INFO (Snom): Sending Request. Mac=000413ABCDEF "
     "Url=https://secure-provisioning.snom.com/api/v1/tokens/KEYID"),
    ("info", "Device updated",
     {"component": "DATABASE", "mac": "000413ABCDEF", "provider": "snom", "server": 8,
      "status": "registered"},
     "INFO (DATABASE): Device updated. Mac=000413ABCDEF Provider=snom Server=8 "
     "Status=registered"),
    ("error", "Error while handling Event",
     {"component": "QUEUE", "action": "add", "err": "403: Forbidden", "mac": "000413ABCDEF",
      "provider": "snom", "server": 8},
     "ERROR (QUEUE): Error while handling Event. Action=add Err=403: Forbidden "
     "Mac=000413ABCDEF Provider=snom Server=8"),
]


@pytest.mark.parametrize(("method", "event", "kw", "expected"), LOG_EXAMPLES)
def test_spec_examples(
    configured: Configure, log_path: Path, method: str, event: str, kw: dict[str, Any],
    expected: str,
) -> None:
    configured()
    getattr(get_logger(), method)(event, **kw)
    lines = _lines(log_path)
    assert len(lines) == 1
    assert LINE.match(lines[0]), lines[0]
    assert _body(lines[0]) == expected


def test_all_spec_examples_in_one_file_in_order(configured: Configure, log_path: Path) -> None:
    configured()
    log = get_logger()
    for method, event, kw, _ in LOG_EXAMPLES:
        getattr(log, method)(event, **kw)
    assert [_body(line) for line in _lines(log_path)] == [e[3] for e in LOG_EXAMPLES]


def test_timestamp_is_local_now(configured: Configure, log_path: Path) -> None:
    configured()
    before = datetime.now().replace(microsecond=0)
    get_logger().info("Stopped", component="MAIN")
    after = datetime.now()
    stamp = datetime.strptime(_lines(log_path)[0][1:20], "%Y-%m-%d %H:%M:%S")
    assert before <= stamp <= after


def test_levels_and_default_component(configured: Configure, log_path: Path) -> None:
    configured(level="DEBUG")
    log = get_logger()
    log.debug("Polling")
    log.info("Polling")
    log.warning("Clock adjusted", component="Snom", offset=3)
    log.error("Stopped", component="MAIN")
    lines = _lines(log_path)
    assert [_body(line) for line in lines] == [
        "DEBUG (MAIN): Polling.",
        "INFO (MAIN): Polling.",
        "WARNING (Snom): Clock adjusted. Offset=3",
        "ERROR (MAIN): Stopped.",
    ]
    assert all(LINE.match(line) for line in lines)


def test_debug_is_filtered_at_info(configured: Configure, log_path: Path) -> None:
    configured(level="INFO")
    log = get_logger()
    log.debug("Hidden", component="QUEUE")
    log.info("Shown", component="QUEUE")
    assert [_body(line) for line in _lines(log_path)] == ["INFO (QUEUE): Shown."]


def test_info_is_filtered_at_error(configured: Configure, log_path: Path) -> None:
    configured(level="ERROR")
    log = get_logger()
    log.info("Hidden", component="QUEUE")
    log.warning("Hidden", component="QUEUE")
    log.error("Shown", component="QUEUE")
    assert [_body(line) for line in _lines(log_path)] == ["ERROR (QUEUE): Shown."]


def test_message_ending_with_punctuation_gets_no_extra_dot(
    configured: Configure, log_path: Path
) -> None:
    configured()
    get_logger().info("Stopping.", component="MAIN")
    assert _body(_lines(log_path)[0]) == "INFO (MAIN): Stopping."


def test_newlines_stay_on_one_line(configured: Configure, log_path: Path) -> None:
    configured()
    get_logger().error(
        "Error while\nhandling Event", component="QUEUE",
        err="500: Internal\nServer Error\r\n<html>\n</html>", mac="000413ABCDEF",
    )
    lines = _lines(log_path)
    assert len(lines) == 1
    assert LINE.match(lines[0]), lines[0]
    assert _body(lines[0]) == (
        "ERROR (QUEUE): Error while handling Event. "
        "Err=500: Internal Server Error <html> </html> Mac=000413ABCDEF"
    )


def test_none_is_a_dash(configured: Configure, log_path: Path) -> None:
    configured()
    get_logger().info("Device updated", component="DATABASE", err=None)
    assert _body(_lines(log_path)[0]) == "INFO (DATABASE): Device updated. Err=-"


@pytest.mark.parametrize("key", ["access_key_secret", "http_password", "authorization",
                                 "api_token", "secret"])
def test_secret_keys_are_masked(configured: Configure, log_path: Path, key: str) -> None:
    configured()
    get_logger().info("Credentials stored", component="LISTENER",
                      **{key: "hunter2-value"}, mac="000413ABCDEF")
    text = log_path.read_text(encoding="utf-8")
    assert "hunter2" not in text
    capitalised = key[:1].upper() + key[1:]
    assert re.search(rf" {capitalised}=\*\*\*( |$)", text, re.M), text


def test_secrets_bound_to_logger_or_context_are_masked(
    configured: Configure, log_path: Path
) -> None:
    configured()
    structlog.contextvars.bind_contextvars(http_password="ctx-hunter2")
    get_logger(authorization="Hawk id=bound-hunter2").info("Sending Request", component="Snom")
    text = log_path.read_text(encoding="utf-8")
    assert "hunter2" not in text
    assert "Authorization=***" in text
    assert "Http_password=***" in text


def test_context_values_appear_on_the_line(configured: Configure, log_path: Path) -> None:
    configured()
    structlog.contextvars.bind_contextvars(mac="000413ABCDEF", provider="snom")
    get_logger().info("Device updated", component="DATABASE", status="registered")
    assert _body(_lines(log_path)[0]) == (
        "INFO (DATABASE): Device updated. Mac=000413ABCDEF Provider=snom Status=registered"
    )


def test_exception_stays_on_one_line(configured: Configure, log_path: Path) -> None:
    configured()
    log = get_logger()
    try:
        raise ValueError("bad value\nsecond line")
    except ValueError:
        log.exception("Unexpected error", component="QUEUE", mac="000413ABCDEF")
    lines = _lines(log_path)
    assert len(lines) == 1
    assert LINE.match(lines[0]), lines[0]
    assert _body(lines[0]) == (
        "ERROR (QUEUE): Unexpected error. Exc=ValueError: bad value second line "
        "Mac=000413ABCDEF"
    )
    assert "Traceback" not in lines[0]


def test_json_format(configured: Configure, log_path: Path) -> None:
    configured(fmt="json")
    log = get_logger()
    log.error("Error while handling Event", component="QUEUE", action="add",
              err="403: Forbidden", mac="000413ABCDEF", provider="snom", server=8,
              access_key_secret="hunter2")
    log.info("Polling\nagain")
    log.debug("Hidden")
    lines = _lines(log_path)
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "Error while handling Event"
    assert first["level"] == "ERROR"
    assert first["component"] == "QUEUE"
    assert (first["action"], first["err"], first["mac"], first["provider"], first["server"]) == (
        "add", "403: Forbidden", "000413ABCDEF", "snom", 8)
    assert first["access_key_secret"] == "***"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first["timestamp"])
    assert "event" not in first
    assert (second["message"], second["level"], second["component"]) == (
        "Polling\nagain", "INFO", "MAIN")
    assert "hunter2" not in log_path.read_text(encoding="utf-8")


def test_json_exception(configured: Configure, log_path: Path) -> None:
    configured(fmt="json")
    try:
        raise KeyError("gone")
    except KeyError:
        get_logger().exception("Request failed", component="LISTENER")
    lines = _lines(log_path)
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "ERROR"
    assert record["exc"] == "KeyError: 'gone'"


def test_reopen_after_logrotate(configured: Configure, log_path: Path) -> None:
    sink = configured()
    log = get_logger()
    log.info("Before rotation", component="MAIN")
    rotated = log_path.with_name("rps.log.1")
    log_path.rename(rotated)
    log.info("Still old file", component="MAIN")  # written through the old handle
    sink.reopen()
    log.info("After rotation", component="MAIN")
    assert [_body(line) for line in _lines(rotated)] == [
        "INFO (MAIN): Before rotation.", "INFO (MAIN): Still old file."]
    assert [_body(line) for line in _lines(log_path)] == ["INFO (MAIN): After rotation."]


def test_log_file_creates_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "rps.log"
    sink = LogFile(str(path))
    try:
        sink.write("x\n")
        sink.flush()
    finally:
        sink.close()
    assert path.read_text(encoding="utf-8") == "x\n"


def test_stderr_sink(capsys: pytest.CaptureFixture[str]) -> None:
    sink = configure(log_file="-", level="INFO", fmt="text")
    try:
        get_logger().info("Listening", component="LISTENER", address="127.0.0.1:15777")
        sink.reopen()  # a no-op for stderr
    finally:
        sink.close()  # must not close stderr
    err = capsys.readouterr().err
    assert _body(err.strip()) == "INFO (LISTENER): Listening. Address=127.0.0.1:15777"


_LOGGED = re.compile(r"""\blog\.(?:debug|info|warning|error|exception)\(\s*["']([^"']+)["']""")


def test_every_log_line_of_the_package_is_in_docs_logs_md() -> None:
    """An operator greps what docs/logs.md lists: a line missing there (as Grandstream's
    `Removing with an experimental call.` was) is a line nobody can look up."""
    root = Path(__file__).resolve().parents[2]
    documented = (root / "docs" / "logs.md").read_text(encoding="utf-8")
    messages = {m for path in (root / "rps_service").rglob("*.py")
                for m in _LOGGED.findall(path.read_text(encoding="utf-8"))}
    assert len(messages) > 50  # the pattern still finds the package's log calls
    missing = sorted(m for m in messages if f"{m}." not in documented)
    assert missing == [], f"not in docs/logs.md: {missing}"


def test_configuring_the_log_keeps_mohawks_debug_out(configured: Configure) -> None:
    # mohawk logs the payloads it signs (device passwords) at DEBUG: never, at any level.
    configured("DEBUG")
    assert not logging.getLogger("mohawk").isEnabledFor(logging.DEBUG)
    assert mohawk.base.pprint.pformat is repr  # type: ignore[attr-defined]
