"""What the phones' listener tells a device's timeline (docs/timeline.md): each request it
can attribute to a device, with the phone's address, model and firmware, the answer, and
why it was refused.

The listener notes the device a request names (by its file name, the login offered, its URL
key or its User-Agent) and the refusal's reason on the request; :func:`record_fetch` turns
the note and the answer into a ``fetch`` entry once the answer is known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from rps_service.models import Device
from rps_service.timeline import Timeline
from rps_service.ztp.auth import AuthResult
from rps_service.ztp.useragent import UserAgent

#: The reasons a fetch was refused, as the timeline names them.
NO_CREDENTIALS = "no credentials"
WRONG_PASSWORD = "wrong password"  # noqa: S105 (a reason, not a password)
UNKNOWN_USER = "unknown user"
MAC_MISMATCH = "MAC mismatch"
DEVICE_REMOVED = "device removed"
THROTTLED = "throttled"
_FILE_LENGTH = 200


@dataclass
class FetchNote:
    """The device a request names, and why it was refused (None: not refused, or the
    answer's status says it)."""

    device: Device
    reason: str | None = None


#: The request's key under which the listener keeps its note.
NOTE = web.RequestKey("rps_fetch", FetchNote)


def note(request: web.Request, device: Device | None, reason: str | None = None) -> None:
    """Attribute ``request`` to ``device`` (nothing when there is none)."""
    if device is not None:
        request[NOTE] = FetchNote(device, reason)


def refusal_reason(device: Device, has_secret: bool, offered: str | None,
                   result: AuthResult) -> str:
    """Why a login was refused, in the timeline's words.

    A first request without credentials and an expired nonce (the phone is asked again,
    as on its first request) are ``no credentials``; a malformed header or a replayed nonce
    count as a ``wrong password``, like a password that does not match.
    """
    if not result.reason:
        return NO_CREDENTIALS
    if not has_secret:
        return DEVICE_REMOVED
    if offered is not None and offered != device.http_username:
        return UNKNOWN_USER
    return WRONG_PASSWORD


def record_fetch(timeline: Timeline | None, request: web.Request, response: web.StreamResponse,
                 ip: str, path: str, parse: Callable[[Device, str | None], UserAgent]) -> None:
    """Record the request noted on ``request`` as a ``fetch`` entry of its device."""
    if timeline is None or not timeline.enabled:
        return
    fetch = request.get(NOTE)
    if fetch is None:
        return
    device = fetch.device
    agent = parse(device, request.headers.get("User-Agent"))
    reason = THROTTLED if response.status == 429 else fetch.reason
    if response.status < 400:
        reason = None
    timeline.record(device.provider, device.mac, "fetch", ip=ip, file=path[:_FILE_LENGTH],
                    model=agent.model, firmware=agent.firmware, result=response.status,
                    reason=reason)
