"""A provider's rps.ini section: the keys every vendor shares, and the validators they use.

Each vendor module declares its section as a subclass of :class:`ProviderSettings` (its
default ``api_url``, its credential keys, its own switches); the registry turns those into
the ``[<provider>]`` sections of rps.ini and the bodies the credentials API accepts. This
module imports nothing of the daemon, so config.py and the vendor modules can both use it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    create_model,
)

#: The host of the shipped example ``provisioning_url``: phones sent there never arrive.
PLACEHOLDER_HOST = "pbx.example.com"


def http_url(value: str) -> str:
    """An absolute http(s) URL with a host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return value


def base_url(value: str) -> str:
    """An http(s) URL ending in ``/`` (one is added)."""
    return http_url(value if value.endswith("/") else value + "/")


HttpUrl = Annotated[str, AfterValidator(http_url)]
BaseUrl = Annotated[str, AfterValidator(base_url)]


class Section(BaseModel):
    """An rps.ini section: frozen, unknown keys refused, values trimmed."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class ProviderSettings(Section):
    """``[<provider>]``: what every vendor section has (docs/vendors/).

    Subclasses set the vendor's ``api_url`` default, add their credential keys (``SecretStr``
    for secrets) and name them in ``credential_keys``, and may add switches of their own.
    """

    #: The fields that are the vendor account's credentials (the master credentials here;
    #: per server through ``PUT /providers/{provider}/credentials/{server}``).
    credential_keys: ClassVar[tuple[str, ...]] = ()
    #: Credential keys that may stay empty (booleans always may).
    optional_keys: ClassVar[tuple[str, ...]] = ()

    enabled: bool = False
    api_url: HttpUrl = "https://example.invalid/"
    provisioning_url: str = f"https://{PLACEHOLDER_HOST}/ztprov/"
    timeout: float = Field(30.0, gt=0, le=600)
    # Bytes of one vendor answer read at most (compressed or decoded): answers are a few
    # kilobytes, a catalogue page about 200 KB; a bigger one fails that call (transient).
    max_answer: int = Field(1_048_576, ge=16_384, le=64 * 1_048_576)
    # Requests per second per vendor account, paced evenly (1/rate_limit s apart). No
    # vendor publishes its limit; 5/s is far below what throttled peers report and still
    # registers 18,000 phones an hour.
    rate_limit: float = Field(5.0, gt=0, le=10_000)

    def credentials(self) -> dict[str, str | bool]:
        """The master credentials given in this section (secrets unwrapped)."""
        values: dict[str, str | bool] = {}
        for key in self.credential_keys:
            value: Any = getattr(self, key)
            values[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return values

    @classmethod
    def secret_keys(cls) -> tuple[str, ...]:
        """The credential keys whose values are secrets (never shown or logged)."""
        return tuple(k for k in cls.credential_keys
                     if cls.model_fields[k].annotation is SecretStr)

    @classmethod
    def switch_keys(cls) -> tuple[str, ...]:
        """The credential keys that are booleans (optional, default false)."""
        return tuple(k for k in cls.credential_keys if cls.model_fields[k].annotation is bool)


_CREDENTIAL_MODELS: dict[type[ProviderSettings], type[BaseModel]] = {}
_URL_MODELS: dict[type[ProviderSettings], type[BaseModel]] = {}


def _provisioning_url_field(section: type[ProviderSettings]) -> tuple[Any, Any]:
    """``provisioning_url`` as the API takes it: optional, an http(s) URL, and whatever
    the vendor's section checks besides (e.g. a URL FDPS can keep whole)."""
    checks = section.model_fields["provisioning_url"].metadata
    url: Any = Annotated[str, StringConstraints(max_length=1024, pattern=r"^https?://\S+$"),
                         *checks]
    return (url | None, Field(None))


def credentials_model(section: type[ProviderSettings]) -> type[BaseModel]:
    """The body ``PUT /providers/{provider}/credentials/{server}`` takes for a provider:
    its own credential keys (strings; switches booleans) and an optional
    ``provisioning_url``; anything else, another provider's keys included, is refused."""
    model = _CREDENTIAL_MODELS.get(section)
    if model is None:
        fields: dict[str, Any] = {}
        for key in section.credential_keys:
            if key in section.switch_keys():
                fields[key] = (bool, False)
            elif key in section.optional_keys:
                fields[key] = (str | None, Field(None, max_length=255))
            else:
                fields[key] = (str, Field(min_length=1, max_length=255))
        fields["provisioning_url"] = _provisioning_url_field(section)
        model = create_model(
            f"{section.__name__}Credentials",
            __config__=ConfigDict(extra="forbid", strict=True), **fields)
        _CREDENTIAL_MODELS[section] = model
    return model


def provisioning_url_model(section: type[ProviderSettings]) -> type[BaseModel]:
    """A body holding only ``provisioning_url``: a server's URL stored on its own, keeping
    whatever keys the server has (in master mode a server other than 1 has none)."""
    model = _URL_MODELS.get(section)
    if model is None:
        model = create_model(
            f"{section.__name__}ProvisioningUrl",
            __config__=ConfigDict(extra="forbid", strict=True),
            provisioning_url=_provisioning_url_field(section))
        _URL_MODELS[section] = model
    return model
