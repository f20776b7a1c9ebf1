"""The HTTP side every provider shares: rate, pause, lease fencing, logging, metrics, timeouts.

One :class:`VendorHttp` per provider sends its requests straight to the transport (httpx's
client layer adds nothing a vendor call needs). Signing is the request's ``httpx.Auth``
(Hawk, a bearer token, a signed query, Basic), driven here step by step so that every
request it yields (a token request, a retry after a clock correction) goes through the same
checks:

1. the account's turn: :class:`~rps_service.providers.ratelimit.AccountGate` (rate limit,
   throttle pause); a turn that would come after the lease ends is not waited for: the
   call is *deferred* (nothing sent, the event comes back when the turn comes);
2. the lease (:mod:`rps_service.pipeline.lease`): lost or run out → :class:`LeaseLost`,
   nothing sent; the request's timeout never outlasts it;
3. the ``INFO (<Vendor>): Sending Request. Mac=… Url=… Verb=…`` line (``Xmlrpc=`` the
   method of an XML-RPC call), with secrets in the query masked;
4. the metrics observer, told of every request's operation, status and duration, and the
   device's timeline (:data:`rps_service.timeline.CALL`), of its URL as logged and attempt;
5. the answer, read under one deadline (the provider's ``timeout``) and at most
   ``max_answer`` bytes (:func:`~rps_service.providers.transport.read_answer`).

An account's gate lives while the account is used: :meth:`VendorHttp.forget_idle` drops the
gates of accounts gone quiet (credentials rotated away, a server removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Protocol

import httpx

from rps_service import timeline
from rps_service.logs import get_logger
from rps_service.pipeline import lease as leases
from rps_service.providers.errors import transport_error
from rps_service.providers.protocol import Failure, ProviderError, RequestObserver
from rps_service.providers.ratelimit import AccountGate
from rps_service.providers.tokens import TokenAuth
from rps_service.providers.transport import AnswerTooLarge, read_answer

log = get_logger()

#: Seconds an event waits when this instance has no share of its account's rate.
NO_SHARE_RETRY = 1.0
#: How often a call outside the pipeline looks again for a share.
NO_SHARE_POLL = 0.25

#: The metrics label of a request an auth step adds (e.g. ``token``): set it in the
#: request's extensions under this key; otherwise the call's operation is used.
OPERATION = "rps.operation"
#: The XML-RPC method of a request, set in its extensions under this key: the log line
#: names it (every call of an XML-RPC vendor goes to the same URL).
RPC_METHOD = "rps.rpc_method"
#: Query parameters whose values never reach rps.log.
SECRET_QUERY = frozenset({"access_token", "token", "signature", "client_secret", "password",
                          "secret", "key", "api_key", "sig"})


def loggable_url(url: httpx.URL) -> str:
    """The URL as rps.log shows it: secret query values masked (``access_token=***``)."""
    if not url.query:
        return str(url)
    parts = []
    for part in url.query.decode("ascii", "replace").split("&"):
        name, sep, _ = part.partition("=")
        parts.append(f"{name}=***" if sep and name.lower() in SECRET_QUERY else part)
    return str(url.copy_with(query=None)) + "?" + "&".join(parts)


def _what(request: httpx.Request) -> dict[str, str]:
    """What the ``Sending Request.`` line says besides the URL: the HTTP method (a GET and a
    PUT of the same endpoint look alike otherwise), and an XML-RPC call's method. Both sort
    after ``Url=``, so the line starts as it always did."""
    what = {"verb": request.method}
    method = request.extensions.get(RPC_METHOD)
    if method:
        what["xmlrpc"] = str(method)
    return what


class RateShares(Protocol):
    """Where an account's gate gets its share of the rate when instances share it."""

    async def ready(self, account: str, gate: AccountGate, rate_limit: float) -> None:
        """Return once ``gate`` has its share (at once for an account already known)."""


class VendorHttp:
    """Sends one provider's requests; ``gate(account)`` is shared by all its workers."""

    def __init__(
        self,
        *,
        name: str,
        label: str,
        transport: httpx.AsyncBaseTransport,
        timeout: float,
        rate_limit: float,
        retry_cap: float,
        max_answer: int = 1_048_576,
        gentle: float = 0.0,
        observe: RequestObserver | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.label = label
        self.transport = transport
        self.timeout = timeout
        self.rate_limit = rate_limit
        self.retry_cap = retry_cap
        self.max_answer = max_answer  # bytes of a vendor's answer read at most
        self.gentle = gentle  # seconds of one event at a time after a pause (AccountGate)
        self.observe = observe
        self._monotonic = monotonic
        self._sleep = sleep
        self._gates: dict[str, AccountGate] = {}
        self._busy: dict[str, int] = {}  # account → its operations under way
        #: Set when several instances share each account's rate (rps_service.service).
        self.shares: RateShares | None = None

    def gate(self, account: str) -> AccountGate:
        """The rate limit and pause of one vendor account."""
        gate = self._gates.get(account)
        if gate is None:
            gate = self._gates[account] = AccountGate(self.rate_limit, cap=self.retry_cap,
                                                      gentle=self.gentle,
                                                      clock=self._monotonic)
        return gate

    @contextlib.contextmanager
    def using(self, account: str) -> Iterator[None]:
        """Mark an operation on ``account`` under way: its gate is not forgotten meanwhile."""
        self._busy[account] = self._busy.get(account, 0) + 1
        try:
            yield
        finally:
            self._busy[account] -= 1
            if not self._busy[account]:
                del self._busy[account]

    def forget_idle(self, quiet: float, keep: Collection[str] = ()) -> frozenset[str]:
        """Drop the gates of accounts gone quiet; the accounts dropped.

        A gate goes only when nothing needs it: no operation under way on its account, not
        in ``keep`` (the accounts the scheduler's lanes and the cluster's heartbeat still
        hold a gate of: they never have to look it up again), and
        :meth:`AccountGate.idle` (no pause in force, no slot claimed, unused for ``quiet``
        seconds). A later call on the account gets a fresh gate, which is safe then (see
        :meth:`AccountGate.idle`).
        """
        gone = frozenset(account for account, gate in self._gates.items()
                         if account not in keep and account not in self._busy
                         and gate.idle(quiet))
        for account in gone:
            del self._gates[account]
        return gone

    async def send(self, request: httpx.Request, *, account: str, operation: str,
                   mac: str = "-", auth: httpx.Auth | None = None) -> httpx.Response:
        """Send ``request`` (and whatever its auth step adds); the last response, read.

        Raises :class:`ProviderError` when no answer came (transient) or the call was
        deferred, :class:`~rps_service.pipeline.lease.LeaseLost` when the lease no longer holds.
        """
        with self.using(account):
            lease = leases.CURRENT.get()
            if isinstance(auth, TokenAuth):
                await auth.prepare()  # the token request first, with a turn of its own
            await self._turn(account, lease)
            if auth is None:
                return await self._send_one(request, operation, mac, lease)
            # Driven by hand: httpx's client would send the auth step's requests itself.
            flow = auth.async_auth_flow(request)
            outgoing = await flow.__anext__()
            while True:
                response = await self._send_one(outgoing, operation, mac, lease)
                try:
                    outgoing = await flow.asend(response)
                except StopAsyncIteration:
                    return response
                await self._turn(account, lease)

    async def _turn(self, account: str, lease: leases.Lease | None) -> None:
        gate = self.gate(account)
        if self.shares is not None:
            await self.shares.ready(account, gate, self.rate_limit)
        claimed = gate.take_claim()  # the slot the scheduler claimed with the event
        give_up = self._monotonic() + self.timeout
        while True:
            now = self._monotonic()
            if claimed is not None:
                when, claimed = claimed, None
            else:
                when = gate.next_slot()
                if math.isinf(when) and lease is None and now < give_up:
                    # A call outside the pipeline (the Test button, a job's lookup) has no
                    # event to give back: it waits for a share, up to the provider's timeout.
                    await self._sleep(NO_SHARE_POLL)
                    continue
                if math.isinf(when) or (lease is not None and when - now > lease.remaining()):
                    raise self._deferred(gate, when - now)
                when = gate.reserve()
            if when > now:
                await self._sleep(when - now)
            if not gate.held(self._monotonic()):
                gate.sent(when, self._monotonic())
                return
            # Paused (or the share lapsed) while waiting: wait again, or defer.

    def _deferred(self, gate: AccountGate, wait: float) -> ProviderError:
        now = self._monotonic()
        if gate.paused_until > now:
            why = "is paused after a throttling answer"
            if math.isinf(wait):  # paused, and no share either: look again after the pause
                wait = gate.paused_until - now
        elif math.isinf(wait):
            # Other instances send this account's calls: the event goes back for them (or
            # for this instance, once it has a share again).
            why, wait = "has no share of rate_limit on this instance", NO_SHARE_RETRY
        else:
            why = f"has no free slot under rate_limit ({self.rate_limit:g}/s)"
        return ProviderError(
            f"Not sent: the {self.label} account {why} for {wait:.1f}s more",
            Failure.TRANSIENT, retry_after=max(wait, 0.1), deferred=True,
        )

    async def _send_one(self, request: httpx.Request, operation: str, mac: str,
                        lease: leases.Lease | None) -> httpx.Response:
        timeout = self.timeout
        if lease is not None:
            timeout = min(timeout, lease.check())
        request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        operation = str(request.extensions.get(OPERATION, operation))
        url = loggable_url(request.url)
        log.info("Sending Request", component=self.label, mac=mac, url=url, **_what(request))
        started, status = self._monotonic(), "error"
        try:
            # One deadline for the whole call: a vendor trickling a byte at a time never
            # trips a per-read timeout, yet must not hold the event past ``timeout``.
            async with asyncio.timeout(timeout):
                response = await self.transport.handle_async_request(request)
                response.request = request
                response = await read_answer(response, self.max_answer)
            status = str(response.status_code)
        except TimeoutError as exc:
            status = "timeout"
            raise transport_error(httpx.ReadTimeout("deadline", request=request),
                                  timeout) from exc
        except AnswerTooLarge as exc:
            raise ProviderError(f"{self.label} answer too large: more than {exc.limit} bytes "
                                "(max_answer)", Failure.TRANSIENT) from exc
        except httpx.RequestError as exc:
            status = "timeout" if isinstance(exc, httpx.TimeoutException) else "error"
            raise transport_error(exc, timeout) from exc
        finally:
            took = self._monotonic() - started
            if self.observe is not None:
                self.observe(self.name, operation, status, took)
            subject = timeline.CALL.get()
            if subject is not None:
                subject.call(request.method, url, status, took)
        return response
