"""The FDPS emulator: Fanvil's XML-RPC redirection service at ``/fanvil/xmlrpc.php``.

As strict as what is known of FDPS allows:

* HTTP Basic with the user name and hex(MD5(hex(MD5(password)))) -- the plain password is
  refused like any wrong one (HTTP 401; how FDPS refuses a login is not public);
* ``POST`` of ``text/xml`` only; every method checks its parameter count and types;
* per account, *servers* (``addMaterialServer`` with ``key=value`` strings, named by
  ``cfgName``) and *devices* (``registerDevice(mac, server)``); a MAC is held by one account
  at most, and ``registerDevice`` of a MAC that any account holds (this one included) is
  ``Error: device_had_existed``; ``deleteServer`` refuses a server a device is bound to;
  ``registerDevice`` refuses a server that does not exist;
* answers are ``[bool, text]`` with FDPS's error texts verbatim (``Error:device_not_exist``,
  ``Error:server_not_exist``, ``Error: device_had_existed``, ...);
* MACs are 12 upper-case hex digits (the form peers send; whether FDPS takes others is not
  known, so this refuses them with ``Error: mac_format_error``).

Seeded: the demo account ``demo-fanvil`` and the account ``other-fanvil``, which holds
``0C383E999999`` (:data:`FOREIGN_MAC`). These are fake demo logins; printing them is fine.
Throttling answers HTTP 429 with Retry-After: a guess, FDPS publishes no limit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .emulator import Held
from .state import SandboxState
from .xmlrpc import (
    XmlRpcEmulator,
    XmlRpcRefused,
    answer,
    fault,
    parse_call,
    string_params,
)

PATH = "/fanvil/xmlrpc.php"
REALM = "FDPS"
DEMO_USER = "demo-fanvil"
DEMO_PASSWORD = "demo-fanvil-password"  # noqa: S105 - a published fake demo login
OTHER_USER = "other-fanvil"
OTHER_PASSWORD = "other-fanvil-password"  # noqa: S105 - a published fake demo login
FOREIGN_MAC = "0C383E999999"
OK = "success"  # FDPS's success text is not public; clients must not depend on it
#: ``deleteServer`` of a server a device is bound to: refused, wording not public.
SERVER_IN_USE = "Error:server_has_device"
CONFIG_KEYS = frozenset({"cfgName", "cfgPfMode", "cfgDhcpOpt", "cfgPnpEnable", "cfgPfSrv",
                         "cfgPfName", "cfgPfProt"})
REQUIRED_KEYS = ("cfgName", "cfgPfSrv", "cfgPfName", "cfgPfProt")
#: ``cfgPfProt`` codes and the scheme FDPS rebuilds a phone's URL with.
SCHEMES = {"1": "ftp", "2": "tftp", "4": "http", "5": "https"}
_MAC = re.compile(r"[0-9A-F]{12}")
_HOST = re.compile(r"([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?")
_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,1024}")
_WRITES = frozenset({"redirect.registerDevice", "redirect.deRegisterDevice",
                     "redirect.deleteServer", "redirect.addMaterialServer"})
Result = tuple[bool, Any]


@dataclass
class FdpsAccount:
    """One FDPS login: its servers (name → ``cfg*`` values) and devices (MAC → server)."""

    username: str
    password: str = field(repr=False)
    servers: dict[str, dict[str, str]] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)


def server_url(config: dict[str, str]) -> str:
    """The URL FDPS sends a phone to: the protocol's scheme, host, ``/``, path."""
    scheme = SCHEMES.get(config.get("cfgPfProt", ""), "?")
    return f"{scheme}://{config.get('cfgPfSrv', '')}/{config.get('cfgPfName', '')}"


def basic_password(password: str) -> str:
    """The password FDPS expects in Basic auth: hex(MD5(hex(MD5(password)))), lower case."""
    inner = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    return hashlib.md5(inner.encode(), usedforsecurity=False).hexdigest()


class FanvilEmulator(XmlRpcEmulator):
    """Fanvil FDPS XML-RPC."""

    name = "fanvil"
    prefix = "/fanvil"
    foreign_mac = FOREIGN_MAC

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.accounts = {user: FdpsAccount(user, password) for user, password in
                         ((DEMO_USER, DEMO_PASSWORD), (OTHER_USER, OTHER_PASSWORD))}
        other = self.accounts[OTHER_USER]
        other.servers[FOREIGN_MAC] = {"cfgName": FOREIGN_MAC, "cfgPfSrv": "other.example",
                                      "cfgPfName": "prov/", "cfgPfProt": "5"}
        other.devices[FOREIGN_MAC] = FOREIGN_MAC
        #: Every answered call: (user, method, first parameter, answer text), the newest last.
        self.calls: deque[tuple[str, str, str, str]] = deque(maxlen=1000)
        self._methods: dict[str, Callable[[FdpsAccount, tuple[Any, ...]], Result]] = {
            "redirect.listServers": self._list_servers,
            "redirect.listDevices": self._list_devices,
            "redirect.addMaterialServer": self._add_material_server,
            "redirect.deleteServer": self._delete_server,
            "redirect.registerDevice": self._register_device,
            "redirect.deRegisterDevice": self._deregister_device,
        }

    # -- the Emulator interface -----------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", PATH, self.handle, name="fanvil-xmlrpc")

    def api_url(self, base: str) -> str:
        return f"{base}{PATH}"

    def demo_credentials(self) -> dict[str, str | bool]:
        return {"username": DEMO_USER, "password": DEMO_PASSWORD}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {"username": DEMO_USER, "password": "not-the-password"}

    def sample_mac(self, index: int) -> str:
        return f"0C383E00{index:04X}"

    def holds(self, mac: str) -> Held | None:
        account = self.accounts[DEMO_USER]
        server = account.devices.get(mac.upper())
        if server is None:
            return None
        config = account.servers[server]
        return Held(server_url(config), None, None, {"server": server, "config": config})

    write_methods = _WRITES

    def written_mac(self, params: tuple[Any, ...]) -> str | None:
        return _subject(params).lower() or None

    def snapshot(self) -> dict[str, Any]:
        return {"accounts": {
            a.username: {"servers": {n: server_url(c) for n, c in a.servers.items()},
                         "devices": dict(a.devices)}
            for a in self.accounts.values()}}

    # -- the XML-RPC endpoint -------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        try:
            method, params, user = await parse_call(request, self.login_ok, REALM)
            ok, value = self.call(user, method, params)
        except XmlRpcRefused as refused:
            return refused.response
        return answer([ok, value])

    def call(self, user: str, method: str, params: tuple[Any, ...]) -> Result:
        """One authenticated call, without HTTP (in-process tests use it too); a refused
        call raises XmlRpcRefused with the fault to answer."""
        run = self._methods.get(method)
        if run is None:
            raise XmlRpcRefused(fault(1, "Unknown method"))  # PHP XML-RPC servers' answer
        ok, value = run(self.accounts[user], params)
        self.calls.append((user, method, _subject(params),
                           value if isinstance(value, str) else OK))
        return ok, value

    def login_ok(self, user: str, password: str) -> bool:
        """Whether Basic carried a known user and hex(MD5(hex(MD5(its password))))."""
        account = self.accounts.get(user)
        expected = basic_password(account.password if account else "decoy")
        return hmac.compare_digest(password.encode(), expected.encode()) and account is not None

    # -- methods --------------------------------------------------------------------------

    def _list_servers(self, account: FdpsAccount, params: tuple[Any, ...]) -> Result:
        string_params("redirect.listServers", params, 0)
        servers = [dict(config) for config in account.servers.values()]
        # Quotes come back as &#34; inside the text (one peer decodes them).
        return True, json.dumps(servers).replace('"', "&#34;")

    def _list_devices(self, account: FdpsAccount, params: tuple[Any, ...]) -> Result:
        string_params("redirect.listDevices", params, 0)
        return True, sorted(account.devices)

    def _add_material_server(self, account: FdpsAccount, params: tuple[Any, ...]) -> Result:
        if len(params) != 1 or not isinstance(params[0], list) \
                or not all(isinstance(p, str) for p in params[0]):
            raise XmlRpcRefused(fault(-32602, "redirect.addMaterialServer: expected one "
                                              "array of key=value strings"))
        config = _configs(params[0])
        if config is None or any(k not in config for k in REQUIRED_KEYS) \
                or not config["cfgName"]:
            return False, "Error: param_error"  # wording not public
        if not _valid_location(config):
            return False, "Error: url_format_error"
        name = config["cfgName"]
        if name in account.servers:
            return False, "Error:server_had_existed"
        account.servers[name] = config
        self.state.history[name.lower()].append(("addMaterialServer", server_url(config)))
        return True, OK

    def _delete_server(self, account: FdpsAccount, params: tuple[Any, ...]) -> Result:
        (name,) = string_params("redirect.deleteServer", params, 1)
        if name not in account.servers:
            return False, "Error:server_not_exist"
        if name in account.devices.values():
            return False, SERVER_IN_USE
        del account.servers[name]
        self.state.history[name.lower()].append(("deleteServer", None))
        return True, OK

    def _register_device(self, account: FdpsAccount, params: tuple[Any, ...]) -> Result:
        mac, name = string_params("redirect.registerDevice", params, 2)
        if not _MAC.fullmatch(mac):
            return False, "Error: mac_format_error"
        if name not in account.servers:
            return False, "Error:server_not_exist"
        if any(mac in other.devices for other in self.accounts.values()):
            return False, "Error: device_had_existed"
        account.devices[mac] = name
        self.state.history[mac.lower()].append(("registerDevice",
                                                server_url(account.servers[name])))
        return True, OK

    def _deregister_device(self, account: FdpsAccount, params: tuple[Any, ...]) -> Result:
        (mac,) = string_params("redirect.deRegisterDevice", params, 1)
        if not _MAC.fullmatch(mac):
            return False, "Error: mac_format_error"
        if mac not in account.devices:
            return False, "Error:device_not_exist"
        del account.devices[mac]
        self.state.history[mac.lower()].append(("deRegisterDevice", None))
        return True, OK


def _subject(params: tuple[Any, ...]) -> str:
    """The MAC or server a call is about: its first string, or an array's ``cfgName``."""
    first = params[0] if params else ""
    if isinstance(first, list):
        first = (_configs(first) or {}).get("cfgName", "")
    return first if isinstance(first, str) else ""


def _configs(items: list[Any]) -> dict[str, str] | None:
    """``["cfgName=X", ...]`` as a dict; None for an item without ``=``, an unknown or a
    repeated key."""
    config: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or key not in CONFIG_KEYS or key in config:
            return None
        config[key] = value
    return config


def _valid_location(config: dict[str, str]) -> bool:
    return (config["cfgPfProt"] in SCHEMES and _HOST.fullmatch(config["cfgPfSrv"]) is not None
            and _PATH.fullmatch(config.get("cfgPfName", "")) is not None)
