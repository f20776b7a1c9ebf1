"""The ZTP listener: what a factory-reset phone fetches from ``/ztprov/`` (SPEC §7).

A phone sent here by SRAPS asks for ``snom<MODEL>-<MAC>.htm``, is challenged (401, Digest and
Basic), answers with the credentials the daemon generated for its MAC, and receives a small
settings file pointing it at the tenant's regular provisioning. The flow per request:

1. an IP with too many recent failed authentications gets 429 (``[ztp] fail_limit``);
2. a path outside ``[ztp] path`` is 404; a MAC in the path that differs from the
   User-Agent's is 403 (logged);
3. the device is looked up by the MAC of the file name (or of the User-Agent, for the model
   file and other probes) and authenticated; any failure is the same 401;
4. after authentication, anything but the device's settings file is 404; the settings file
   is 200, and the fetch is recorded on the device row (model, firmware, IP, time).

Every request is logged like a web server's access log: ``GET /ztprov/… 401. Ip=…``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from rps_service.config import ZtpSettings
from rps_service.distributor import utcnow
from rps_service.logs import get_logger, http_server_logger
from rps_service.models import Device
from rps_service.store import Store, StoreUnavailable
from rps_service.ztp.auth import (
    WRONG_CREDENTIALS,
    Authenticator,
    AuthResult,
    NonceBook,
    Secret,
)
from rps_service.ztp.files import RequestedFile, parse_file_name, render_settings
from rps_service.ztp.throttle import FailureThrottle
from rps_service.ztp.useragent import UserAgent, parse_user_agent

log = get_logger()
PROVIDER = "snom"  # the only vendor whose phones fetch this file today
_LOGGED_PATH_LENGTH = 300
_SHUTDOWN_TIMEOUT = 5.0  # seconds a stop waits for requests in flight (phones are quick)
_NO_CACHE = {"Cache-Control": "no-store"}
_TEXT = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
         429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def client_ip(request: web.Request) -> str:
    """The peer's address; behind a reverse proxy on loopback, the last X-Forwarded-For hop.

    Only the entry the proxy itself appended is trusted: anything to its left came from the
    client and can be forged.
    """
    peer = request.remote or "-"
    if _is_loopback(peer):
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last and _ip(last) is not None:
            return last
    return peer


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_loopback(text: str) -> bool:
    address = _ip(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback


def _plain(status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    text = f"{status} {_TEXT.get(status, '')}\n"
    return web.Response(status=status, text=text, headers={**_NO_CACHE, **(headers or {})})


def _secret(device: Device | None) -> Secret | None:
    """The credentials a device may use here: registered, and not revoked by a remove."""
    if device is None or device.status != "registered":
        return None
    if not device.http_username or not device.http_password:
        return None
    return Secret(device.http_username, device.http_password)


def _failure_reason(mac: str | None, device: Device | None, result: AuthResult) -> str:
    # For the operator's log only: the phone gets the same 401 whatever the reason.
    if mac is None:
        return "no MAC in the file name or User-Agent"
    if result.reason == WRONG_CREDENTIALS and _secret(device) is None:
        if device is None:
            return "unknown MAC"
        return f"device is {device.status} (no valid access details)"
    return result.reason


class ZtpListener:
    """The phone-facing HTTP listener (``[ztp]``), separate from the loopback event API."""

    def __init__(self, settings: ZtpSettings, store: Store,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.nonces = NonceBook(settings.nonce_lifetime)
        self.auth = Authenticator(self.nonces)
        self.throttle = FailureThrottle(settings.fail_limit)
        self.address = ""
        self._runner: web.AppRunner | None = None

    def create_app(self) -> web.Application:
        """One catch-all route: every path and method is answered (and logged) here."""
        app = web.Application(client_max_size=4096)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def start(self) -> str:
        """Bind ``listen:port``; the address it listens on."""
        runner = web.AppRunner(self.create_app(), access_log=None, handle_signals=False,
                               shutdown_timeout=_SHUTDOWN_TIMEOUT,
                               logger=http_server_logger("ZTP"))
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.listen, self.settings.port,
                               reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1] if runner.addresses else self.settings.port
        self.address = f"{self.settings.listen}:{port}"
        log.info("Listening", component="ZTP", address=self.address)
        return self.address

    async def close(self) -> None:
        """Stop listening and close the phones' connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one request and log it with its status and the client's IP."""
        ip = client_ip(request)
        try:
            response = await self._answer(request, ip)
        except StoreUnavailable as exc:
            log.error("Database unavailable", component="ZTP", err=str(exc), ip=ip)
            response = _plain(503, {"Retry-After": "30"})
        except Exception:
            log.exception("Request failed", component="ZTP", ip=ip)
            response = _plain(500)
        path = request.raw_path[:_LOGGED_PATH_LENGTH]
        log.info(f"{request.method[:16]} {path} {response.status}", component="ZTP", ip=ip)
        return response

    async def _answer(self, request: web.Request, ip: str) -> web.Response:
        now = self.clock()
        if request.method not in ("GET", "HEAD"):
            return _plain(405, {"Allow": "GET, HEAD"})
        retry_after = self.throttle.retry_after(ip, now)
        if retry_after is not None:
            return _plain(429, {"Retry-After": str(retry_after)})
        name = self._file_name(request.path)
        if name is None:
            return _plain(404)
        wanted = parse_file_name(name)
        agent = parse_user_agent(request.headers.get("User-Agent"))
        if wanted.mac and agent.mac and agent.mac != wanted.mac:
            return self._mismatch(ip, wanted, agent, now)
        mac = wanted.mac or agent.mac
        # The lookup runs for unknown MACs too, and verify() then checks decoy credentials:
        # known and unknown MACs cost the same and answer the same.
        device = await self.store.get_device("snom", mac) if mac else None
        result = self.auth.verify(request.headers.get("Authorization"), request.method,
                                  request.raw_path, _secret(device), now)
        if not result.ok or device is None:
            return self._refuse(ip, mac, device, result, now)
        if wanted.mac is None:
            return _plain(404)  # the model file, firmware, probes: nothing to serve
        return await self._settings_file(request, ip, device, wanted, agent)

    def _file_name(self, path: str) -> str | None:
        # Extra segments are allowed: provisioning_url may be /ztprov/{server}/.
        base = self.settings.path
        if not path.startswith(base):
            return None
        return path[len(base):].rsplit("/", 1)[-1]

    def _mismatch(self, ip: str, wanted: RequestedFile, agent: UserAgent,
                  now: float) -> web.Response:
        log.warning("User-Agent MAC differs from the path", component="ZTP", ip=ip,
                    mac=wanted.mac, ua_mac=agent.mac)
        self._count_failure(ip, now)
        return _plain(403)

    def _refuse(self, ip: str, mac: str | None, device: Device | None, result: AuthResult,
                now: float) -> web.Response:
        if result.reason:
            log.warning("Authentication failed", component="ZTP", ip=ip, mac=mac or "-",
                        reason=_failure_reason(mac, device, result))
            self._count_failure(ip, now)
        response = _plain(401)
        for challenge in self.auth.challenges(now, stale=result.stale):
            response.headers.add("WWW-Authenticate", challenge)
        return response

    def _count_failure(self, ip: str, now: float) -> None:
        if self.throttle.record(ip, now):
            log.warning("Too many failed authentications", component="ZTP", ip=ip,
                        limit=self.throttle.limit, window=f"{self.throttle.window:g}s")

    async def _settings_file(self, request: web.Request, ip: str, device: Device,
                             wanted: RequestedFile, agent: UserAgent) -> web.Response:
        provisioning = await self.store.get_server_provisioning(device.server)
        if provisioning is None:
            # The phone retries later; the operator must PUT the tenant's details first.
            log.warning("Server has no provisioning details", component="ZTP",
                        hint=f"set them with PUT /servers/{device.server}/provisioning",
                        mac=device.mac, server=device.server)
            return _plain(503, {"Retry-After": "300"})
        body = render_settings(provisioning.prov_url, provisioning.http_user,
                               provisioning.http_password)
        if request.method == "GET":
            await self.store.record_ztp_fetch(PROVIDER, device.mac,
                                              agent.model or wanted.model, agent.firmware,
                                              ip, utcnow())
        return web.Response(body=body, content_type="application/xml", charset="utf-8",
                            headers=_NO_CACHE)
