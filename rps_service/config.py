"""rps.ini: read once at start into one frozen, validated settings object.

Every problem is reported as a :class:`ConfigError` naming the file, section, key and
reason, so an operator can fix the file without reading code. Environment variables
``RPS_<SECTION>_<KEY>`` override the file (containers, systemd drop-ins).
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationError, field_validator

from rps_service.providers.section import ProviderSettings, Section, http_url
from rps_service.vendors import PROVIDERS

DEFAULT_PATHS = (Path("etc/rps.ini"), Path("/etc/rps/rps.ini"))
ENV_PREFIX = "RPS_"


class ConfigError(Exception):
    """A configuration problem, with where it is and why."""

    def __init__(self, file: str, reason: str, section: str = "", key: str = "") -> None:
        self.file, self.section, self.key, self.reason = file, section, key, reason
        where = file
        if section:
            where += f": [{section}]"
        if key:
            where += f" {key}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed ``database`` DSN; its repr never shows the password."""

    scheme: Literal["sqlite", "mysql"]
    path: str = ""  # sqlite: file path
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    name: str = ""

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.display()!r})"

    def display(self) -> str:
        """The DSN as it may be logged: the password masked."""
        if self.scheme == "sqlite":
            return f"sqlite:///{self.path}"
        auth = f"{self.user}:***@" if self.password else f"{self.user}@"
        return f"mysql://{auth}{self.host}:{self.port}/{self.name}"


def parse_database_url(value: str) -> DatabaseUrl:
    """Parse ``sqlite:///rel``, ``sqlite:////abs`` or ``mysql://user:pass@host:port/db``."""
    if value.startswith("sqlite:///"):
        path = value[len("sqlite:///") :]
        if not path:
            raise ValueError("sqlite URL needs a file path: sqlite:///relative or sqlite:////abs")
        return DatabaseUrl(scheme="sqlite", path=path)
    parts = urlsplit(value)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError("must start with sqlite:/// or mysql://")
    name = parts.path.lstrip("/")
    if not name or "/" in name:
        raise ValueError("mysql URL needs a database name: mysql://user:pass@host:3306/dbname")
    try:
        port = parts.port or 3306
    except ValueError as exc:
        raise ValueError("mysql URL has a bad port") from exc
    return DatabaseUrl(
        scheme="mysql",
        host=parts.hostname or "127.0.0.1",
        port=port,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        name=name,
    )


def _listen_address(value: str) -> str:
    if value != "localhost":
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError("must be an IP address or localhost") from exc
    return value


_HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")


def _host_names(value: Any) -> Any:
    """``a.example, 10.0.0.5, [fd00::1]`` → lower-case names without brackets."""
    if not isinstance(value, str):
        return value
    names = []
    for item in value.split(","):
        name = item.strip().lower().rstrip(".")
        if not name:
            continue
        bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            if not _HOST_NAME.fullmatch(bare):
                raise ValueError(f"{item.strip()!r} is not a host name or IP address "
                                 "(no scheme, port or path)") from None
        names.append(bare)
    return tuple(names)


ListenAddress = Annotated[str, AfterValidator(_listen_address)]


class GeneralSettings(Section):
    """``[general]``: the listener, queues, database, log and retry policy."""

    listen: ListenAddress = "127.0.0.1"
    port: int = Field(15777, ge=1, le=65535)
    queuenum: int = Field(4, ge=1, le=256)
    queuecap: int = Field(100, ge=1, le=100_000)
    database: DatabaseUrl = parse_database_url("sqlite:////var/lib/rps/rps.db")
    log_file: str = "/var/log/rps/rps.log"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    mode: Literal["master", "tenant"] = "master"
    api_token: SecretStr = SecretStr("")
    max_attempts: int = Field(8, ge=1, le=100)
    max_body: int = Field(1_048_576, ge=1024)
    # Not in the reference rps; documented in the README.
    lease_timeout: float = Field(60.0, gt=0)
    drain_timeout: float = Field(10.0, ge=0)
    retry_base: float = Field(1.0, gt=0)
    retry_cap: float = Field(300.0, gt=0)
    poll_interval: float = Field(1.0, gt=0)
    # Hours between automatic reconciles of each provider and server (0: never).
    reconcile_interval: float = Field(0.0, ge=0, le=24 * 365)
    #: Host header names the API answers besides loopback and ``listen`` when no api_token
    #: is set (DNS rebinding); comma-separated in rps.ini.
    allowed_hosts: tuple[str, ...] = ()
    #: Finished events older than this many days are deleted (0: keep all).
    retention_days: int = Field(30, ge=0, le=36_500)
    #: Record each device's timeline (docs/timeline.md): vendor calls, retries, outcomes
    #: and the phones' requests. Off: the timeline shows only the events.
    timeline: bool = True
    #: The key the database's secrets are sealed with (docs/secrets.md); empty: the default
    #: of :attr:`secret_key_path`.
    secret_key_file: str = ""

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _allowed_hosts(cls, value: Any) -> Any:
        return _host_names(value)

    @field_validator("database", mode="before")
    @classmethod
    def _database(cls, value: Any) -> Any:
        return parse_database_url(value) if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def secret_key_path(self) -> Path:
        """``secret_key_file``, else ``secret.key`` beside an SQLite database, else
        ``/var/lib/rps/secret.key`` (the systemd unit's state directory)."""
        if self.secret_key_file:
            return Path(self.secret_key_file)
        if self.database.scheme == "sqlite" and self.database.path != ":memory:":
            return Path(self.database.path).parent / "secret.key"
        return Path("/var/lib/rps/secret.key")

    @property
    def is_loopback(self) -> bool:
        return self.listen == "localhost" or ipaddress.ip_address(self.listen).is_loopback


def _url_path(value: str) -> str:
    if not value.startswith("/") or not value.endswith("/"):
        raise ValueError("must start and end with /")
    if not _URL_PATH.fullmatch(value):
        raise ValueError("must be a plain URL path (no spaces, query or fragment)")
    return value


_URL_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]+")


class ZtpSettings(Section):
    """``[ztp]``: the phone-facing listener serving the settings file of docs/phone-side.md.

    Off by default: it is meant to face the Internet (behind nginx/TLS), so it is opened on
    purpose. Phones authenticate per device, so a public ``listen`` needs no api_token.
    """

    enabled: bool = False
    listen: ListenAddress = "0.0.0.0"  # noqa: S104
    port: int = Field(15780, ge=1, le=65535)
    path: Annotated[str, AfterValidator(_url_path)] = "/ztprov/"
    # Limits of our own (docs/configuration.md).
    nonce_lifetime: int = Field(300, ge=10, le=86_400)
    #: Failed authentications of one user name from one IP (and of any from one IP) within
    #: 60 s after which a failure is answered 429; valid credentials are never refused.
    fail_limit: int = Field(10, ge=1, le=100_000)
    fail_limit_per_ip: int = Field(100, ge=1, le=1_000_000)
    #: Seconds a request's headers may take to arrive (SPEC §13).
    header_timeout: float = Field(10.0, gt=0, le=300)
    #: Open connections in all, and from one address (0: no cap per address, for a proxy
    #: on the same host whose connections all come from 127.0.0.1).
    max_connections: int = Field(1000, ge=1, le=1_000_000)
    max_connections_per_ip: int = Field(100, ge=0, le=1_000_000)


#: The notifications ``[webhooks]`` can send (docs/webhooks.md).
WEBHOOK_TYPES = ("device.registered", "device.failed", "device.unregistered",
                 "phone.fetched", "phone.refused")


def _webhook_url(value: str) -> str:
    return http_url(value) if value else value


class WebhookSettings(Section):
    """``[webhooks]``: signed notifications to the PBX (docs/webhooks.md); off without a url."""

    url: Annotated[str, AfterValidator(_webhook_url)] = ""
    secret: SecretStr = SecretStr("")
    events: tuple[str, ...] = WEBHOOK_TYPES
    #: Seconds one delivery may take, the receiver's answer included.
    timeout: float = Field(10.0, gt=0, le=300)
    #: Hours a notification is retried before it is dropped (an ERROR line).
    max_age: float = Field(24.0, gt=0, le=24 * 365)
    #: Seconds before the same ``phone.*`` notification (type, device, message) is sent
    #: again: a phone fetching in a loop is told once a window. 0: every one.
    repeat_after: float = Field(60.0, ge=0, le=24 * 3600)

    @field_validator("events", mode="before")
    @classmethod
    def _events(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
        unknown = [n for n in names if n not in WEBHOOK_TYPES]
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r} (known: {', '.join(WEBHOOK_TYPES)})")
        return names

    @property
    def enabled(self) -> bool:
        return bool(self.url)


def _default_providers() -> dict[str, ProviderSettings]:
    return {name: cls.settings_class() for name, cls in PROVIDERS.items()}


class Settings(Section):
    """Everything rps.ini says, validated; built once and passed down.

    ``providers`` holds one section per registered provider (``[snom]``, ``[yealink]``,
    ...), each with its defaults when rps.ini has no such section.
    """

    source: str = "<defaults>"
    general: GeneralSettings = GeneralSettings()
    ztp: ZtpSettings = ZtpSettings()
    webhooks: WebhookSettings = WebhookSettings()
    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)

    def provider(self, name: str) -> ProviderSettings:
        """One provider's section (KeyError for a name no provider has)."""
        return self.providers[name]

    def enabled_providers(self) -> list[str]:
        return [name for name, section in self.providers.items() if section.enabled]


SECTIONS: dict[str, type[Section]] = {
    "general": GeneralSettings,
    "ztp": ZtpSettings,
    "webhooks": WebhookSettings,
    **{name: cls.settings_class for name, cls in PROVIDERS.items()},
}


def find_config(explicit: str | None) -> Path:
    """The config file to read: ``explicit`` or the first default that exists."""
    if explicit:
        return Path(explicit)
    for path in DEFAULT_PATHS:
        if path.exists():
            return path
    return DEFAULT_PATHS[0]


def _read_ini(path: Path) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(
        inline_comment_prefixes=(";", "#"), interpolation=None, default_section="\x00"
    )
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from exc
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(str(path), "key given twice", exc.section, exc.option) from exc
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(str(path), "section given twice", exc.section) from exc
    except configparser.Error as exc:
        raise ConfigError(str(path), f"not an INI file: {exc.message}") from exc
    return {name: dict(parser.items(name)) for name in parser.sections()}


def _apply_env(
    raw: dict[str, dict[str, str]], env: Mapping[str, str]
) -> dict[tuple[str, str], str]:
    """Merge ``RPS_<SECTION>_<KEY>`` overrides; return where each override came from."""
    origin: dict[tuple[str, str], str] = {}
    # Longest name first: RPS_SNOM_XMLRPC_API_URL is [snom-xmlrpc] api_url, not [snom].
    prefixes = sorted(((s.replace("-", "_") + "_", s) for s in SECTIONS), reverse=True,
                      key=lambda pair: len(pair[0]))
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        for prefix, section in prefixes:
            if rest.startswith(prefix):
                key = rest[len(prefix) :]
                raw.setdefault(section, {})[key] = value
                origin[(section, key)] = var
                break
    return origin


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate; raise :class:`ConfigError` on the first problem."""
    file = str(path)
    raw = _read_ini(path)
    origin = _apply_env(raw, os.environ if env is None else env)
    sections: dict[str, Section] = {}
    for name, values in raw.items():
        model = SECTIONS.get(name)
        if model is None:
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            raise ConfigError(file, f"unknown section (known: {known})", name)
        try:
            sections[name] = model.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else ""
            source = origin.get((name, key))
            reason = _reason(err)
            if source:
                reason += f" (from environment variable {source})"
            raise ConfigError(file, reason, name, key) from None
    settings = Settings.model_validate({
        "source": file,
        **{name: sections[name] for name in ("general", "ztp", "webhooks")
           if name in sections},
        "providers": {**_default_providers(),
                      **{name: sections[name] for name in PROVIDERS if name in sections}},
    })
    if settings.webhooks.enabled and not settings.webhooks.secret.get_secret_value():
        raise ConfigError(file, "a webhook url needs a secret to sign with", "webhooks",
                          "secret")
    general = settings.general
    if not general.is_loopback and not general.api_token.get_secret_value():
        raise ConfigError(
            file, "a non-loopback address needs api_token to be set", "general", "listen"
        )
    return settings


def _reason(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    message = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if isinstance(value, str) and not isinstance(err.get("ctx", {}).get("error"), Exception):
        return f"{message} (got {value!r})"
    return message
