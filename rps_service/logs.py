"""rps.log: structlog configured to write the line shapes of docs/logs.md.

Code logs events, not prose: ``log.info("Device updated", component="DATABASE", mac=...,
status=...)``. The text renderer turns that into
``[2026-11-26 10:20:41] INFO (DATABASE): Device updated. Mac=… Status=…`` (keys sorted,
capitalised); the json renderer writes the same event as one JSON object a line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

from rps_service.mohawk_quiet import silence_mohawk_debug
from rps_service.text import escape_controls, one_line

LOGGER_NAME = "rps"
_SECRET_KEYS = re.compile(r"secret|password|passwd|token|authorization|http_pass", re.I)
_RESERVED = ("timestamp", "level", "component", "event")
#: An event may name keys to write first, in this order, before the others (sorted): for
#: lines whose shape tools match, e.g. ``Authentication failed. Ip=… User=… File=…``.
ORDER = "_order"


def get_logger(**bound: Any) -> Any:
    """The project's logger (a structlog BoundLogger), optionally with bound values."""
    return structlog.get_logger(LOGGER_NAME).bind(**bound) if bound else structlog.get_logger(
        LOGGER_NAME
    )


class LogFile:
    """A file-like sink that can be reopened after logrotate moved the file (SIGHUP)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: TextIO = self._open()

    def _open(self) -> TextIO:
        if self.path == "-":
            return sys.stderr
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Created 0640 (not the umask's 0644): the log names devices, servers and users;
        # logrotate's "create 0640" makes the next one the same (deploy/logrotate).
        return open(self.path, "a", encoding="utf-8", buffering=1, opener=_private)

    def write(self, text: str) -> int:
        with self._lock:
            return self._fh.write(text)

    def flush(self) -> None:
        with self._lock:
            self._fh.flush()

    def reopen(self) -> None:
        """Close and open ``path`` again, so lines go to the file now at that path."""
        if self.path == "-":
            return
        with self._lock:
            old, self._fh = self._fh, self._open()
            old.close()

    def close(self) -> None:
        with self._lock:
            if self._fh is not sys.stderr:
                self._fh.close()


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o640)


def redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Mask any value whose key looks like a secret: a last line of defence."""
    for key in event_dict:
        if key not in _RESERVED and _SECRET_KEYS.search(key):
            event_dict[key] = "***"
    return event_dict


def _one_line(value: Any) -> str:
    # Line breaks would split the event; other controls would reach the terminal of
    # whoever tails the file (text.py).
    return one_line("-" if value is None else str(value))


def _ordered_keys(event_dict: EventDict) -> list[str]:
    first = [k for k in event_dict.pop(ORDER, ()) if k in event_dict]
    return first + sorted(k for k in event_dict if k not in first)


def _json_safe(value: Any) -> Any:
    """A value for the json renderer with controls escaped as in the text format (line
    breaks and tabs stay: JSON escapes them), so whoever prints a decoded field gets no
    control character either."""
    if isinstance(value, str):
        return escape_controls(value, keep_breaks=True)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {_json_safe(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return _json_safe(str(value))


class _Timestamp:
    """``timestamp`` in local time to the second, formatted once a second, not per line."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        event_dict["timestamp"] = self._text
        return event_dict


def _exception_line(exc_info: Any) -> str:
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc: BaseException | None = exc_info
    elif isinstance(exc_info, tuple):
        exc = exc_info[1]
    else:
        exc = None
    return f"{type(exc).__name__}: {exc}" if exc is not None else ""


def render_text(_: Any, __: str, event_dict: EventDict) -> str:
    """``[YYYY-MM-DD HH:MM:SS] LEVEL (COMPONENT): Message. Key=Value …`` on one line."""
    timestamp = event_dict.pop("timestamp", "")
    level = str(event_dict.pop("level", "info")).upper()
    component = event_dict.pop("component", "MAIN")
    message = _one_line(event_dict.pop("event", ""))
    exc = event_dict.pop("exc_info", None)
    if exc:
        event_dict["exc"] = _exception_line(exc)
    if message and message[-1] not in ".!?":
        message += "."
    pairs = " ".join(
        f"{key[:1].upper()}{key[1:]}={_one_line(event_dict[key])}"
        for key in _ordered_keys(event_dict)
    )
    line = f"[{timestamp}] {level} ({component}): {message}"
    return f"{line} {pairs}" if pairs else line


def render_json(_: Any, __: str, event_dict: EventDict) -> str:
    """The same event as one JSON object (``message`` holds the event name)."""
    exc = event_dict.pop("exc_info", None)
    if exc:
        event_dict["exc"] = _exception_line(exc)
    event_dict["message"] = event_dict.pop("event", "")
    event_dict["level"] = str(event_dict.get("level", "info")).upper()
    event_dict.setdefault("component", "MAIN")
    event_dict.pop(ORDER, None)  # a JSON object's keys are found by name
    return json.dumps({key: _json_safe(value) for key, value in event_dict.items()},
                      ensure_ascii=False)


_CLIENT_BYTES = re.compile(r":?\s*(?:bytearray\(|b'|b\"|'|\")")


class _HttpServerRecords(logging.Handler):
    """aiohttp's request-handler records as rps.log lines, without tracebacks.

    A request aiohttp cannot parse (a line or header too long, a bad byte) is answered 400
    by aiohttp and logged by it as an exception with a traceback; here it is one WARNING,
    which names the parser's complaint but never echoes the client's bytes (they may hold
    an Authorization header). Anything else is one ERROR line.
    """

    def __init__(self, component: str) -> None:
        super().__init__(logging.WARNING)
        self.component = component

    def emit(self, record: logging.LogRecord) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        log = get_logger()
        if isinstance(exc, HttpProcessingError):
            args = record.args if isinstance(record.args, tuple) else ()
            reason = _CLIENT_BYTES.split(str(exc.message).strip().split("\n")[0], 1)[0]
            log.warning("Malformed request", component=self.component,
                        err=f"{type(exc).__name__}: {reason.strip().rstrip(':')[:120]}",
                        ip=str(args[0]) if args else "-")
            return
        log.error("HTTP server error", component=self.component,
                  err=_exception_line(record.exc_info) or "-",
                  message=_one_line(record.getMessage())[:200])


def http_server_logger(component: str) -> logging.Logger:
    """The ``logger`` for an aiohttp ``AppRunner`` of one listener (``LISTENER``, ``ZTP``).

    aiohttp logs a malformed request with a traceback to ``aiohttp.server``, which, with
    no handler configured, Python prints on stderr: once per request from anyone on the
    Internet. This logger writes one rps.log line instead (:class:`_HttpServerRecords`)
    and drops aiohttp's debug chatter (non-HTTP bytes on the port, early disconnects).
    """
    logger = logging.getLogger(f"{LOGGER_NAME}.http.{component.lower()}")
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(_HttpServerRecords(component))
    return logger


def configure(log_file: str = "-", level: str = "INFO", fmt: str = "text") -> LogFile:
    """Route all structlog output to ``log_file``; returns the sink (call ``reopen`` on SIGHUP)."""
    sink = LogFile(log_file)
    silence_mohawk_debug()  # its DEBUG output would show the payloads it signs
    renderer: Processor = render_text if fmt == "text" else render_json
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _Timestamp(),
        redact_secrets,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.WriteLoggerFactory(file=sink),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    return sink


