"""What every admin command shares: a client for the running daemon's API, where the daemon
is, and the output (aligned tables for humans, ``--json`` for scripts).

The commands use the daemon's own HTTP API (so they work against any instance, and never
touch the database behind its back): the URL comes from ``listen``/``port`` in rps.ini
(``--url`` overrides it) and the bearer token from ``api_token``. Any failure is one line
on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

import httpx

from rps_service.config import GeneralSettings, find_config, load_settings
from rps_service.models import normalize_mac
from rps_service.text import CONTROLS_NOT_BREAKS, escape_controls

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
TIMEOUT = 30.0
MAX_SHOWN = 5  # details listed in an error line
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_BOOLEANS = {"true": True, "false": False}


class AdminError(Exception):
    """A failure to report as one line (exit code 1)."""


class DaemonError(AdminError):
    """The daemon answered with an error: its status, message and details."""

    def __init__(self, status: int, error: str, details: list[dict[str, Any]]) -> None:
        self.status, self.error, self.details = status, error, details
        super().__init__(self.describe())

    def describe(self, where: Callable[[int], str] = lambda i: f"event {i}") -> str:
        """``daemon answered 400: invalid event: event 0: mac: must be …``."""
        text = f"daemon answered {self.status}: {self.error}"
        parts = []
        for detail in self.details[:MAX_SHOWN]:
            index, field = detail.get("index"), detail.get("field")
            place = where(index) if isinstance(index, int) else ""
            prefix = f"{place}: " if place else ""
            prefix += f"{field}: " if field else ""
            parts.append(f"{prefix}{detail.get('message', '')}")
        if len(self.details) > MAX_SHOWN:
            parts.append(f"and {len(self.details) - MAX_SHOWN} more")
        if parts:
            text += ": " + "; ".join(parts)
        if self.status == 401:
            text += " (the token is api_token in rps.ini or RPS_GENERAL_API_TOKEN)"
        return text


class DaemonClient:
    """A small synchronous client for the daemon's API."""

    def __init__(self, url: str, token: str = "", *, timeout: float = TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                    transport=transport)
        self.timeout = timeout

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: Any = None) -> Any:
        """The JSON answer; :class:`AdminError` when unreachable or answering an error."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        # The daemon takes a state-changing request only as JSON, even one without a body
        # (POST /events/{id}/retry): that is what a web page cannot send across sites.
        headers = {} if method in ("GET", "HEAD") else {"Content-Type": "application/json"}
        try:
            response = self._client.request(method, path, params=query, json=body,
                                            headers=headers)
        except httpx.TimeoutException:
            raise AdminError(f"the daemon at {self.url} did not answer within "
                             f"{self.timeout:g}s") from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise AdminError(f"cannot reach the daemon at {self.url}: {reason} "
                             "(is it running? --url sets the address)") from None
        if response.status_code >= 400:
            raise _daemon_error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise AdminError(f"the daemon at {self.url} answered {response.status_code} "
                             "with no JSON (is --url the rps-service API?)") from None


def _daemon_error(response: httpx.Response) -> DaemonError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        details = body.get("details")
        return DaemonError(response.status_code, body["error"],
                           details if isinstance(details, list) else [])
    text = " ".join(response.text.split())[:200] or response.reason_phrase
    return DaemonError(response.status_code, text, [])


# -- where the daemon is ----------------------------------------------------------------


def daemon_url(general: GeneralSettings) -> str:
    """``http://host:port`` of the listener, reachable from this machine."""
    host = general.listen
    if host == "0.0.0.0":  # noqa: S104 (reading the config, not binding)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{general.port}"


def target(args: argparse.Namespace) -> tuple[str, str]:
    """URL and token: from rps.ini, ``--url`` winning; with ``--url`` the file may be absent."""
    path = find_config(getattr(args, "config", None))
    if args.url and not path.exists():
        return args.url, os.environ.get("RPS_GENERAL_API_TOKEN", "")
    general = load_settings(path).general
    return args.url or daemon_url(general), general.api_token.get_secret_value()


# -- output -----------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned by their widest cell; ``-`` for empty cells."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [list(headers), *cells]]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return " ".join(str(value).split())


def time_text(value: Any) -> str:
    # 2026-11-26T10:20:41Z → 2026-11-26 10:20:41 (UTC, like the API)
    return str(value).replace("T", " ").removesuffix("Z") if value else "-"


def print_json(body: Any) -> None:
    # json.dumps escapes C0 controls itself; C1, bidi controls and lone surrogates get
    # JSON's own \u escapes here, so scripts read back the same strings.
    text = json.dumps(body, indent=2, ensure_ascii=False)
    print(CONTROLS_NOT_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


class SafeOutput:
    """A text stream that writes control and bidi characters escaped (``\\x1b``), line
    breaks excepted: what the daemon answers (device names, vendors' messages) is shown,
    never obeyed, by the terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write("\n".join(escape_controls(line) for line in text.split("\n")))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


@contextlib.contextmanager
def safe_output() -> Iterator[None]:
    """stdout and stderr as :class:`SafeOutput` for the duration of an admin command."""
    out, err = SafeOutput(sys.stdout), SafeOutput(sys.stderr)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield


# -- shared by the commands' arguments --------------------------------------------------


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1 (got {value!r})")
    return number


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
    ``provisioning_url`` alone (no keys) stores the server's URL and keeps its keys.
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
    if not body and provisioning_url is None:
        raise AdminError("give the credentials as KEY=VALUE (e.g. access_key_id=… "
                         "access_key_secret=-), or only --provisioning-url")
    if provisioning_url is not None:
        body["provisioning_url"] = provisioning_url
    return body


def pairs_text(body: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """A JSON object as a two-column table, for people."""
    return table(("KEY", "VALUE"), [(k, shown_value(v)) for k, v in body.items() if k not in skip])


def shown_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "-" if value is None or value == "" else str(value)


def mac_arg(value: str) -> str:
    try:
        return normalize_mac(value)
    except ValueError as exc:
        raise AdminError(f"mac {value!r}: {exc}") from None


def put(client: DaemonClient, path: str, body: dict[str, Any]) -> None:
    try:
        client.call("PUT", path, body=body)
    except DaemonError as err:  # one body, not a batch: no "event 0:" in the details
        raise AdminError(err.describe(lambda _: "")) from None


# -- commands ---------------------------------------------------------------------------
