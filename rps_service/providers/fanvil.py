"""Fanvil FDPS (XML-RPC): point factory-reset Fanvil phones at our zero-touch URL.

FDPS holds, per account, *servers* (groups: where a phone goes) and *devices* (a MAC bound to
one server). A device cannot carry its own URL, so every phone gets a server of its own, named
by its MAC, whose address is the phone's URL split the way FDPS wants it: host (and port),
path without its leading slash, protocol code. FDPS rebuilds the URL as host + ``/`` + path.

A registration is the four calls that work in production: ``deRegisterDevice(mac)`` (an
unknown device is fine), ``deleteServer(mac)`` (FDPS refuses to delete a server a device is
bound to, hence the first call; an unknown server is fine), ``addMaterialServer([...])`` and
``registerDevice(mac, mac)``. The same four calls re-point a device. A remove is the first
two. FDPS answers ``[ok, text]``; ``Error: device_had_existed`` on ``registerDevice`` means
another account holds the MAC (our own copy was just de-registered).

FDPS carries nothing but the URL to the phone, so the URL holds the device's key
(:attr:`~rps_service.access.AccessMode.URL_KEY`) and ends in the file name ``$mac.cfg``, a
placeholder the phone replaces with its MAC. Basic auth sends hex(MD5(hex(MD5(password)))),
never the password itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, SecretStr

from rps_service.access import URL_KEY, AccessMode
from rps_service.models import normalize_mac
from rps_service.providers.errors import clean_text, owned_by_other
from rps_service.providers.keyed import drop_accounts
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.section import HttpUrl, ProviderSettings
from rps_service.providers.vendor import Account, ProviderContext
from rps_service.providers.xmlrpc import RpcFault, XmlRpcProvider, answer_of

#: The file name the phone asks for under its URL; the phone replaces ``$mac`` with its MAC
#: (lower-case hex) as it does in its own provisioning settings.
FILE_NAME = "$mac.cfg"
#: ``cfgPfProt``: the protocol codes FDPS (and the phones' own settings) use.
PROTOCOLS = {"http": "4", "https": "5"}
SCHEMES = {code: scheme for scheme, code in PROTOCOLS.items()} | {"1": "ftp", "2": "tftp"}
#: How FDPS answers "nothing of that name": tolerated on the way (FDPS spells both).
DEVICE_GONE = frozenset({"device_not_exist", "device_not_existed"})
SERVER_GONE = frozenset({"server_not_exist", "server_not_existed"})
OWNED = "device_had_existed"
#: The error name at the start of a refusal (``Error: device_had_existed`` and any detail).
_CODE = re.compile(r"^\s*error\s*:\s*(?P<code>[A-Za-z0-9_]+)", re.I)
#: Keys a listServers entry may name its parts by (its JSON shape is not public).
_NAME_KEYS = ("cfgName", "name", "serverName", "groupName")
#: After a throttling answer, the account's events go one at a time for this long (seconds).
GENTLE_SECONDS = 60.0
#: How long an interrupted registration may be resumed (seconds), and how many are kept.
RESUME_WINDOW = 600.0
MAX_PROGRESS = 10_000
TAKEN_HINT = "release it in the FDPS account that holds it or ask Fanvil support to move it"


def fdps_url_problem(url: str) -> str | None:
    """Why FDPS cannot keep ``url`` whole (it stores host, port and path only), or None."""
    parts = urlsplit(url)
    if parts.scheme not in PROTOCOLS or not parts.hostname:
        return "FDPS takes only http:// or https:// provisioning URLs"
    if parts.query or parts.fragment or "@" in parts.netloc:
        return ("FDPS keeps only host, port and path of a URL: set a provisioning_url "
                "without user, query (?...) or fragment (#...)")
    if "{mac}" in parts.path:
        return ("provisioning_url for fanvil must not contain {mac}: the URL key names the "
                f"phone and the phone asks for {FILE_NAME}")
    return None


def _fdps_url(value: str) -> str:
    """A ``provisioning_url`` FDPS can keep: refused in rps.ini (check-config names it) and
    by the credentials API, rather than by every event."""
    problem = fdps_url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class FanvilSettings(ProviderSettings):
    """``[fanvil]``: the FDPS XML-RPC endpoint and the account's login."""

    credential_keys: ClassVar[tuple[str, ...]] = ("username", "password")

    # Plain HTTP is what peers use; whether FDPS answers HTTPS is not confirmed.
    api_url: HttpUrl = "http://fdps.fanvil.com/xmlrpc.php"
    username: str = ""
    password: SecretStr = SecretStr("")
    provisioning_url: Annotated[str, AfterValidator(_fdps_url)] = (
        ProviderSettings.model_fields["provisioning_url"].default)


def fdps_password(password: str) -> str:
    """What Basic auth carries: hex(MD5(hex(MD5(password)))), lower case."""
    once = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    return hashlib.md5(once.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class MaterialServer:
    """A URL as FDPS stores it: ``cfgPfSrv`` host[:port], ``cfgPfName`` path, ``cfgPfProt``."""

    host: str
    path: str  # no leading slash: FDPS puts one between host and path
    protocol: str

    @classmethod
    def from_url(cls, url: str) -> MaterialServer:
        """Split a device URL; a URL FDPS cannot keep whole is a permanent error."""
        problem = fdps_url_problem(url)
        if problem is not None:
            raise ProviderError(problem, Failure.PERMANENT)
        parts = urlsplit(url)
        return cls(parts.netloc, parts.path.lstrip("/"), PROTOCOLS[parts.scheme])

    def url(self) -> str:
        """The URL FDPS sends the phone to: host + ``/`` + path."""
        return f"{SCHEMES.get(self.protocol, '?')}://{self.host}/{self.path}"

    def configs(self, name: str) -> list[str]:
        """``addMaterialServer``'s one parameter: ``key=value`` strings.

        ``cfgPfMode=1`` applies the settings at once; DHCP option and PnP provisioning are
        off so that the phone keeps to this server (peers found some models hang otherwise).
        """
        return [f"cfgName={name}", "cfgPfMode=1", "cfgDhcpOpt=false", "cfgPnpEnable=false",
                f"cfgPfSrv={self.host}", f"cfgPfName={self.path}",
                f"cfgPfProt={self.protocol}"]


class Refusal(ProviderError):
    """FDPS answered ``[false, text]``: it got the call and refused it."""


@dataclass(frozen=True)
class Progress:
    """An interrupted registration: the URL it was for, steps done, when (``clock``)."""

    url: str
    done: int
    at: float


@dataclass(frozen=True)
class Answer:
    """FDPS's ``[ok, text]``; ``code`` is the text's error name (``device_not_exist``)."""

    ok: bool
    text: str
    value: Any = None

    @property
    def code(self) -> str:
        match = _CODE.match(self.text) if not self.ok else None
        return match.group("code").lower() if match else ""


class FanvilProvider(XmlRpcProvider):
    """Fanvil FDPS XML-RPC (docs/vendors/fanvil.md)."""

    name = "fanvil"
    label = "Fanvil"
    service = "FDPS"
    settings_class = FanvilSettings
    access = AccessMode.URL_KEY
    can_list = True
    credentials_noun = "login"
    # For a minute after FDPS throttles an account its events go one at a time: every
    # worker resuming together when the pause ends would be throttled together again, and
    # a registration is four calls, not one.
    gentle_after_throttle = GENTLE_SECONDS

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        # (account, MAC) → how far an interrupted registration got (see _recipe).
        self._progress: dict[tuple[str, str], Progress] = {}

    async def close(self) -> None:
        await super().close()
        self._progress.clear()

    def forget_accounts(self, keys: frozenset[str]) -> None:
        super().forget_accounts(keys)
        drop_accounts(self._progress, keys)

    async def device_url(self, server: int, url_key: str | None = None) -> str:
        """The base URL with the device's key as a path segment, then ``$mac.cfg``."""
        url = await super().device_url(server, url_key)
        return url + FILE_NAME if url_key and url.endswith("/") else url

    # -- operations -----------------------------------------------------------------------

    async def vendor_register(self, account: Account, device: Device) -> None:
        if device.settings:
            names = ", ".join(sorted(device.settings))
            raise ProviderError(f"FDPS takes no extra settings (unknown: {names})",
                                Failure.PERMANENT)
        server = MaterialServer.from_url(device.url)
        key = (account.key, device.mac)
        resumed = self._progress.pop(key, None)
        if resumed and resumed.url == device.url and self.clock() - resumed.at < RESUME_WINDOW:
            try:
                await self._recipe(account, device, server, resumed.done)
                return
            except ProviderError as err:
                if err.transient and not isinstance(err, Refusal):
                    raise
                # FDPS's state is not what the resumed step expected (another instance
                # went on with this phone?): the whole recipe again decides.
        await self._recipe(account, device, server, 0)

    async def _recipe(self, account: Account, device: Device, server: MaterialServer,
                      start: int) -> None:
        """The four calls from step ``start`` on; a throttling answer, a timeout or another
        failure on the way to FDPS remembers how far they got, so that the retry goes on
        from there. FDPS's own refusals are never resumed: they say its state is not what
        the recipe expected."""
        # The URL's key is a password: FDPS's answers never show it, but be sure.
        mac, secrets = device.mac, (device.url, server.path, *URL_KEY.findall(device.url))
        steps = (
            lambda: self._call(account, "redirect.deRegisterDevice", mac, mac=mac,
                               operation="deregister", tolerate=DEVICE_GONE),
            lambda: self._call(account, "redirect.deleteServer", mac, mac=mac,
                               operation="delete_server", tolerate=SERVER_GONE),
            lambda: self._call(account, "redirect.addMaterialServer", server.configs(mac),
                               mac=mac, operation="add_server", secrets=secrets),
            lambda: self._call(account, "redirect.registerDevice", mac, mac, mac=mac,
                               operation="register", secrets=secrets),
        )
        for step in range(start, len(steps)):
            try:
                await steps[step]()
            except ProviderError as err:
                if err.transient and step and not isinstance(err, Refusal):
                    self._remember(account, device, step)
                elif step == len(steps) - 1 and not err.transient:
                    await self._cleanup(account, mac)  # no server left for a MAC not taken
                raise

    def _remember(self, account: Account, device: Device, done: int) -> None:
        now = self.clock()
        if len(self._progress) >= MAX_PROGRESS:
            self._progress = {k: p for k, p in self._progress.items()
                              if now - p.at < RESUME_WINDOW}
        if len(self._progress) < MAX_PROGRESS:
            self._progress[(account.key, device.mac)] = Progress(device.url, done, now)

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        self._progress.pop((account.key, device.mac), None)
        await self._call(account, "redirect.deRegisterDevice", device.mac, mac=device.mac,
                         operation="deregister", tolerate=DEVICE_GONE)
        await self._call(account, "redirect.deleteServer", device.mac, mac=device.mac,
                         operation="delete_server", tolerate=SERVER_GONE)

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        if device.mac not in await self._devices(account, device.mac):
            return None  # FDPS lists only this account's devices: no owner to tell
        servers = await self._servers(account, device.mac)
        return VendorRecord(device.mac, servers.get(device.mac))

    async def vendor_list(self, account: Account) -> AsyncIterator[VendorRecord]:
        macs = await self._devices(account, "-")
        servers = await self._servers(account, "-") if macs else {}
        for mac in macs:
            yield VendorRecord(mac, servers.get(mac))

    async def vendor_check(self, account: Account) -> str:
        answer = await self._call(account, "redirect.listServers", mac="-", operation="check")
        entries = _server_entries(answer.text)
        count = "" if entries is None else (
            f" ({len(entries)} server{'' if len(entries) == 1 else 's'})")
        return (f"FDPS accepted the login {account.text('username')}{count}; whether the "
                "account may redirect phones is not verified: it shows only at the first add")

    # -- XML-RPC --------------------------------------------------------------------------

    async def _call(self, account: Account, method: str, *params: Any, mac: str,
                    operation: str, tolerate: frozenset[str] = frozenset(),
                    secrets: tuple[str, ...] = ()) -> Answer:
        """One call; a refusal in ``tolerate`` (by its error name) counts as done."""
        result = await self.rpc(account, method, *params, operation=operation, mac=mac,
                                secrets=(fdps_password(account.text("password")), *secrets))
        if isinstance(result, RpcFault):
            raise ProviderError(f"FDPS answered {method} with {result}", Failure.PERMANENT)
        answer = self._answer(method, result)
        if answer.ok or answer.code in tolerate:
            return answer
        raise self._refusal(method, answer, account, secrets)

    def rpc_auth(self, account: Account) -> httpx.Auth:
        """FDPS takes the password double-MD5-hashed (docs/vendors/fanvil.md)."""
        return httpx.BasicAuth(account.text("username"), fdps_password(account.text("password")))

    def _answer(self, method: str, result: Any) -> Answer:
        read = answer_of(result) if isinstance(result, list) and len(result) >= 2 else None
        if read is not None:
            value = result[1]
            return Answer(read[0], value if isinstance(value, str) else "", value)
        raise ProviderError(f"FDPS answered {method} with no [ok, text] pair",
                            Failure.PERMANENT)

    def _refusal(self, method: str, answer: Answer, account: Account,
                 secrets: tuple[str, ...]) -> Refusal:
        text = self._clean(answer.text or "no reason", account, secrets)
        code = answer.code
        if code == OWNED:
            owned = owned_by_other(self.service, text, hint=TAKEN_HINT)
            return Refusal(owned.message, owned.failure, hint=owned.hint)
        if code in ("server_had_existed", *SERVER_GONE):
            # Another instance is re-pointing the same phone: the next attempt starts over.
            return Refusal(f"FDPS answered {method}: {text}", Failure.TRANSIENT)
        hint = ""
        if code == "url_format_error":
            hint = "FDPS refused the provisioning URL: check provisioning_url"
        elif code == "mac_format_error":
            hint = "FDPS refused the MAC"
        return Refusal(f"FDPS answered {method}: {text}", Failure.PERMANENT, hint=hint)

    def _clean(self, text: str, account: Account, secrets: tuple[str, ...]) -> str:
        hashed = fdps_password(account.text("password"))
        return clean_text(text, (*account.secrets, hashed, *secrets))

    async def _cleanup(self, account: Account, mac: str) -> None:
        # Best effort: the next registration deletes it first anyway.
        with contextlib.suppress(ProviderError):
            await self._call(account, "redirect.deleteServer", mac, mac=mac,
                             operation="delete_server", tolerate=SERVER_GONE)

    async def _devices(self, account: Account, mac: str) -> list[str]:
        """``listDevices``: the account's MACs, normalised; entries that are none skipped."""
        answer = await self._call(account, "redirect.listDevices", mac=mac, operation="list")
        entries = answer.value if isinstance(answer.value, list) else []
        macs: list[str] = []
        for entry in entries:
            if not isinstance(entry, str):
                continue
            try:
                macs.append(normalize_mac(entry))
            except ValueError:
                continue
        return list(dict.fromkeys(macs))

    async def _servers(self, account: Account, mac: str) -> dict[str, str]:
        """``listServers``: server name (upper case) → URL, for the entries that tell one."""
        answer = await self._call(account, "redirect.listServers", mac=mac, operation="list")
        urls: dict[str, str] = {}
        for entry in _server_entries(answer.text) or ():
            name = next((entry[k] for k in _NAME_KEYS if isinstance(entry.get(k), str)), "")
            url = _entry_url(entry)
            if name and url:
                urls[name.strip().upper()] = url
        return urls


def _server_entries(text: str) -> list[Mapping[str, Any]] | None:
    """The objects of listServers' JSON text (quotes may come as ``&#34;``); None when the
    text is no JSON list (nor an object holding one): its shape is not public."""
    try:
        data = json.loads(html.unescape(text))
    except ValueError:
        return None
    if isinstance(data, dict):  # a wrapper object: its first list
        data = next((v for v in data.values() if isinstance(v, list)), None)
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else None


def _entry_url(entry: Mapping[str, Any]) -> str | None:
    host, path, protocol = (entry.get(k) for k in ("cfgPfSrv", "cfgPfName", "cfgPfProt"))
    if not isinstance(host, str) or not host or not isinstance(path, str):
        return None
    return MaterialServer(host, path, str(protocol)).url()
