"""The ZTP listener: what a factory-reset phone fetches from ``/ztprov/`` (docs/phone-side.md).

A phone sent here by its vendor's redirection service asks for its settings file and
receives a small file, in its family's format (:mod:`rps_service.ztp.family`), pointing it
at the tenant's regular provisioning. How the phone proves who it is depends on what the
vendor carried to it:

* **credentials** (SRAPS, YMCS, ...): the phone is challenged (401, Digest and Basic) and
  answers with the username and password the daemon generated for its MAC (or, for
  Poly-like vendors, for its server);
* **a URL key**: the URL itself holds a per-device key as a path segment; it is checked
  like a password (constant time, revoked by a remove; a wrong key is 403).

The flow per request (connections themselves are capped and timed in :mod:`.connections`):

1. a path outside ``[ztp] path`` is 404; a MAC in the path that differs from the
   User-Agent's is 403 (logged);
2. the device is found by its URL key, or by the MAC of the file name (or of the
   User-Agent, for model files and other probes), and authenticated; any failure gives the
   same answer whether the device exists or not, and is logged
   (``Authentication failed. Ip=… User=… File=…``) and counted: past ``[ztp] fail_limit``
   (per IP and user name) or ``fail_limit_per_ip``, a failure is answered 429 rather than
   401 (:mod:`.throttle`); valid credentials are never refused for their address;
3. after authentication, anything but the device's settings file is 404; the settings file
   is 200, and the fetch is recorded on the device row (model, firmware, IP, time).

Every request is logged like a web server's access log: ``GET /ztprov/… 401. Ip=…`` (URL
keys masked: they are secrets); one that names a known device also goes to its timeline
(:mod:`.fetches`), with why it was refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from rps_service.access import (
    URL_KEY,
    AccessMode,
    mask_url_keys,
    new_url_key,
    url_key_selector,
)
from rps_service.clock import utcnow
from rps_service.config import ZtpSettings
from rps_service.guesses import rely_on_guess
from rps_service.logs import get_logger, http_server_logger
from rps_service.models import Device
from rps_service.store import Store, StoreUnavailable
from rps_service.store.outbox import Notice
from rps_service.timeline import Timeline
from rps_service.vendors import PROVIDERS, family_of
from rps_service.webhooks import Repeats
from rps_service.ztp import fetches
from rps_service.ztp.auth import (
    REPLAYED,
    WRONG_CREDENTIALS,
    Authenticator,
    AuthResult,
    NonceBook,
    Secret,
)
from rps_service.ztp.connections import (
    IDLE_TIMEOUT,
    ConnectionGuard,
    GuardedSite,
    Limits,
    raise_file_limit,
)
from rps_service.ztp.family import PhoneFamily, mac_in
from rps_service.ztp.nonces import SharedNonces
from rps_service.ztp.throttle import FailureThrottle
from rps_service.ztp.useragent import UserAgent, parse_user_agent

log = get_logger()
_LOGIN_MODES = (AccessMode.CREDENTIALS, AccessMode.SERVER)
_DIGEST_USER = re.compile(r'username="([^"]*)"')
_SPACE = re.compile(r"\s")
#: The keys of an ``Authentication failed.`` line, first and in this order (fail2ban).
_FAILURE_KEYS = ("ip", "user", "file")
_LOGGED_PATH_LENGTH = 300
_MAX_TELLING = 10_000  # notices being stored at once; beyond, the database is far behind
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
    """The credentials a device may use here: from the moment they were first sent until a
    ``remove`` succeeds (it clears them), whatever a later failed re-push left as status."""
    if device is None or not device.http_username or not device.http_password:
        return None
    return Secret(device.http_username, device.http_password)


def _agent(device: Device, header: str | None) -> UserAgent:
    family = family_of(device.provider)
    return (family.parse_user_agent if family else parse_user_agent)(header)


def _phones_guess(provider: str) -> str:
    cls = PROVIDERS.get(provider)
    return cls.phones_guess if cls is not None else ""


def _login_mode(provider: str) -> bool:
    cls = PROVIDERS.get(provider)
    return cls is not None and cls.access in _LOGIN_MODES


def _offered_username(header: str | None) -> str | None:
    """The username an Authorization header names (only to pick among a MAC's device rows;
    the header is verified afterwards)."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() == "digest":
        match = _DIGEST_USER.search(token)
        return match.group(1) if match else None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(token.strip(), validate=True).partition(b":")[0].decode()
        except (binascii.Error, ValueError):
            return None
    return None


def _same(given: str, expected: str) -> bool:
    # Hash first: compare_digest leaks the lengths of its arguments, hashes have one length.
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


def _file_name(request: web.Request) -> str:
    # The last segment only: URL keys live in the folders before it.
    return request.path.rsplit("/", 1)[-1][:100] or "/"


def loggable_path(path: str) -> str:
    """A request path as rps.log shows it: URL keys cut to their selector (they are secrets)."""
    return mask_url_keys(path)


def _too_many(retry_after: int) -> web.Response:
    return _plain(429, {"Retry-After": str(retry_after)})


def _shown_user(user: str | None) -> str:
    """A user name as the failure line shows it: the phone's (or an attacker's) choice, so
    cut short and without spaces (escaped), which would make it look like more keys."""
    if not user:
        return "-"
    return _SPACE.sub(lambda m: f"\\x{ord(m.group()):02x}", user[:64])


def _failure_reason(mac: str | None, device: Device | None, result: AuthResult) -> str:
    # For the operator's log only: the phone gets the same 401 whatever the reason.
    if mac is None:
        return "no MAC in the file name or User-Agent"
    if result.reason == WRONG_CREDENTIALS and _secret(device) is None:
        if device is None:
            return "unknown MAC"
        return f"device is {device.status} (no access details: removed or never added)"
    return result.reason


class ZtpListener:
    """The phone-facing HTTP listener (``[ztp]``), separate from the loopback event API."""

    def __init__(self, settings: ZtpSettings, store: Store,
                 clock: Callable[[], float] = time.time,
                 idle_timeout: float = IDLE_TIMEOUT, timeline: Timeline | None = None,
                 repeats: Repeats | None = None) -> None:
        self.settings = settings
        self.timeline = timeline
        self.idle_timeout = idle_timeout
        self.store = store
        self.clock = clock
        self.nonces = NonceBook(settings.nonce_lifetime)
        self.shared_nonces = SharedNonces(store, self.nonces)
        self.auth = Authenticator(self.nonces)
        self.throttle = FailureThrottle(settings.fail_limit, settings.fail_limit_per_ip)
        self.guard = ConnectionGuard(Limits(settings.header_timeout, settings.max_connections,
                                            settings.max_connections_per_ip))
        self.address = ""
        self._runner: web.AppRunner | None = None
        self._decoy_key = new_url_key()  # compared when no device has the key
        self._telling: set[asyncio.Task[None]] = set()  # webhook notices being stored
        self.repeats = repeats or Repeats(0)

    def create_app(self) -> web.Application:
        """One catch-all route: every path and method is answered (and logged) here."""
        app = web.Application(client_max_size=4096)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def start(self) -> str:
        """Bind ``listen:port``; the address it listens on."""
        raise_file_limit(self.settings.max_connections)
        await self.shared_nonces.refresh(self.clock())  # the first challenge signs with it
        runner = web.AppRunner(self.create_app(), access_log=None, handle_signals=False,
                               shutdown_timeout=_SHUTDOWN_TIMEOUT,
                               keepalive_timeout=self.idle_timeout,
                               logger=http_server_logger("ZTP"))
        await runner.setup()
        try:
            site = GuardedSite(runner, self.settings.listen, self.settings.port, self.guard)
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
        if self._telling:
            await asyncio.wait(self._telling, timeout=_SHUTDOWN_TIMEOUT)

    def _tell(self, kind: str, device: Device, message: str) -> None:
        """Store a webhook notice off the request's path (a shared batched write): the
        phone's answer never waits for it."""
        if kind not in self.store.webhook_types or len(self._telling) >= _MAX_TELLING:
            return
        notice = Notice(kind, device.provider, device.mac, device.server, device.status,
                        message)
        if not self.repeats.fresh(notice):
            return
        task = asyncio.create_task(self._store_notice(notice), name="ztp-notice")
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def _store_notice(self, notice: Notice) -> None:
        try:
            await self.store.insert_notice(notice, utcnow())
        except Exception as exc:  # the phone was answered; only the notice is lost
            log.error("Webhook notice not stored", component="ZTP", err=str(exc),
                      mac=notice.mac, type=notice.type)

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
        path = loggable_path(request.raw_path)[:_LOGGED_PATH_LENGTH]
        log.info(f"{request.method[:16]} {path} {response.status}", component="ZTP", ip=ip)
        fetches.record_fetch(self.timeline, request, response, ip, path, _agent)
        return response

    async def _answer(self, request: web.Request, ip: str) -> web.Response:
        now = self.clock()
        if request.method not in ("GET", "HEAD"):
            return _plain(405, {"Allow": "GET, HEAD"})
        segments = self._segments(request.path)
        if segments is None:
            return _plain(404)
        name, folders = segments[-1], segments[:-1]
        key = next((s for s in reversed(folders) if URL_KEY.fullmatch(s)), None)
        if key is not None:
            return await self._by_url_key(request, ip, key, name, now)
        return await self._by_login(request, ip, name, now)

    async def _by_login(self, request: web.Request, ip: str, name: str,
                        now: float) -> web.Response:
        """Vendors that carry credentials: the device of the MAC, as its phone logs in."""
        wanted = mac_in(name)
        agent = parse_user_agent(request.headers.get("User-Agent"))
        header = request.headers.get("Authorization")
        offered = _offered_username(header)
        if wanted and agent.mac and agent.mac != wanted:
            if self._recording():  # the device the file names: only for its timeline
                fetches.note(request, await self._login_device(wanted, offered),
                             fetches.MAC_MISMATCH)
            return self._mismatch(ip, wanted, agent.mac, now)
        mac = wanted or agent.mac or mac_in(name, digits=True)
        # The lookup runs for unknown MACs too, and verify() then checks decoy credentials:
        # known and unknown MACs cost the same and answer the same. A file that names no
        # phone (a directory, a licence) is the login's own device: it is answered 404 after
        # authentication rather than counted as a failed login.
        if mac:
            device = await self._login_device(mac, offered)
        else:
            device = await self._device_of_login(offered)
        await self.shared_nonces.refresh(now)
        result = self.auth.verify(header, request.method, request.raw_path, _secret(device),
                                  now)
        if result.nonce and not await self.shared_nonces.use(result.nonce, result.count):
            result = AuthResult(False, REPLAYED)  # used at another instance
        if not result.ok or device is None:
            if device is not None:
                fetches.note(request, device, fetches.refusal_reason(
                    device, _secret(device) is not None, offered, result))
            return self._refuse(request, ip, mac, device, result, now)
        fetches.note(request, device)
        return await self._serve(request, ip, device, name)

    def _recording(self) -> bool:
        return self.timeline is not None and self.timeline.enabled

    async def _login_device(self, mac: str, offered: str | None) -> Device | None:
        rows = [d for d in await self.store.devices_with_mac(mac) if _login_mode(d.provider)]
        # Normally one row; the same MAC under two providers is told apart by its username.
        return next((d for d in rows if d.http_username == offered), rows[0] if rows else None)

    async def _device_of_login(self, offered: str | None) -> Device | None:
        if not offered:
            return None
        device = await self.store.device_by_username(offered)
        return device if device is not None and _login_mode(device.provider) else None

    async def _by_url_key(self, request: web.Request, ip: str, key: str, name: str,
                          now: float) -> web.Response:
        """Vendors that carry only a URL: its key is the device's password."""
        selector = url_key_selector(key) or ""
        device = await self.store.device_by_url_key(key)  # by its keyed hash
        matches = _same(key, (device.url_key if device else None) or self._decoy_key)
        if device is None or not matches:
            await self._note_unknown_key(request)
            retry_after = self._failed(request, ip, None, now, key=f"{selector}***",
                                       reason="unknown or revoked URL key")
            return _plain(403) if retry_after is None else _too_many(retry_after)
        family = family_of(device.provider)
        agent = (family.parse_user_agent if family else parse_user_agent)(
            request.headers.get("User-Agent"))
        if agent.mac and agent.mac != device.mac:
            fetches.note(request, device, fetches.MAC_MISMATCH)
            self._tell("phone.refused", device, f"{_file_name(request)} refused from {ip}:"
                       f" MAC mismatch (User-Agent {agent.mac})")
            return self._mismatch(ip, device.mac, agent.mac, now)
        fetches.note(request, device)
        return await self._serve(request, ip, device, name)

    async def _note_unknown_key(self, request: web.Request) -> None:
        """A key no device has: the timeline of the device the User-Agent names, if any
        (removed: its key was revoked; else the key is not its own)."""
        mac = parse_user_agent(request.headers.get("User-Agent")).mac
        if not mac or not self._recording():
            return
        rows = [d for d in await self.store.devices_with_mac(mac)
                if not _login_mode(d.provider)]
        if rows:
            fetches.note(request, rows[0], fetches.WRONG_PASSWORD if rows[0].url_key
                         else fetches.DEVICE_REMOVED)

    async def _serve(self, request: web.Request, ip: str, device: Device,
                     name: str) -> web.Response:
        family = family_of(device.provider)
        if family is None or not family.serves(name, device.mac):
            return _plain(404)  # the model file, firmware, probes: nothing to serve
        return await self._settings_file(request, ip, device, family, name)

    def _segments(self, path: str) -> list[str] | None:
        # Extra segments are allowed: provisioning_url may be /ztprov/{server}/, a URL key...
        base = self.settings.path
        if not path.startswith(base):
            return None
        return path[len(base):].split("/")

    def _mismatch(self, ip: str, mac: str, ua_mac: str, now: float) -> web.Response:
        # Not an authentication (none was checked): logged, not counted.
        log.warning("User-Agent MAC differs from the path", component="ZTP", ip=ip,
                    mac=mac, ua_mac=ua_mac)
        return _plain(403)

    def _refuse(self, request: web.Request, ip: str, mac: str | None, device: Device | None,
                result: AuthResult, now: float) -> web.Response:
        if result.reason:  # not merely no credentials yet, or a stale nonce
            reason = _failure_reason(mac, device, result)
            retry_after = self._failed(
                request, ip, _offered_username(request.headers.get("Authorization")), now,
                mac=mac or "-", reason=reason)
            if device is not None:
                self._tell("phone.refused", device,
                           f"{_file_name(request)} refused from {ip}: {reason}")
            if retry_after is not None:
                return _too_many(retry_after)
        response = _plain(401)
        for challenge in self.auth.challenges(now, stale=result.stale):
            response.headers.add("WWW-Authenticate", challenge)
        return response

    def _failed(self, request: web.Request, ip: str, user: str | None, now: float,
                **details: str) -> int | None:
        """Log and count a failed authentication; the Retry-After of a 429, if it is one."""
        shown = _shown_user(user)
        log.warning("Authentication failed", component="ZTP", _order=_FAILURE_KEYS, ip=ip,
                    user=shown, file=loggable_path(request.raw_path)[:_LOGGED_PATH_LENGTH],
                    **details)
        retry_after, reached = self.throttle.failed(ip, user or "-", now)
        for which in reached:
            count = self.throttle.per_user if which == "user" else self.throttle.per_ip
            log.warning("Too many failed authentications", component="ZTP", ip=ip,
                        limit=count.limit, window=f"{count.window:g}s",
                        **({"user": shown} if which == "user" else {}))
        return retry_after

    async def _settings_file(self, request: web.Request, ip: str, device: Device,
                             family: PhoneFamily, name: str) -> web.Response:
        provisioning = await self.store.get_server_provisioning(device.server)
        if provisioning is None:
            # The phone retries later; the operator must PUT the tenant's details first.
            log.warning("Server has no provisioning details", component="ZTP",
                        hint=f"set them with PUT /servers/{device.server}/provisioning",
                        mac=device.mac, server=device.server)
            return _plain(503, {"Retry-After": "300"})
        user_agent = request.headers.get("User-Agent")
        body = family.render_file(name, provisioning, device, user_agent)
        if guess := _phones_guess(device.provider):
            rely_on_guess("ZTP", guess)
        if request.method == "GET":
            agent = family.parse_user_agent(user_agent)
            await self.store.record_ztp_fetch(device.provider, device.mac, agent.model,
                                              agent.firmware, ip, utcnow())
            self._tell("phone.fetched", device,
                       f"{name} fetched from {ip} (model {agent.model or '-'},"
                       f" firmware {agent.firmware or '-'})")
        return web.Response(body=body, content_type=family.content_type, charset="utf-8",
                            headers=_NO_CACHE)
