"""Accounts that go quiet are forgotten (credentials rotated away, a server removed): their
gate, lane, cluster claim, tokens and caches, only once nothing depends on them (a pause, a
claimed slot, a queued event, a call under way), and the rate holds across.

Every clock here is injected: ten minutes pass without a sleep.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from rps_service.config import GeneralSettings
from rps_service.models import Credentials, Event
from rps_service.pipeline.cluster import Cluster
from rps_service.pipeline.distributor import FORGET_AFTER, Distributor
from rps_service.pipeline.lanes import LaneBoard, LaneId
from rps_service.providers.http import VendorHttp
from rps_service.providers.keyed import CreatedOnce, drop_accounts
from rps_service.providers.protocol import Device
from rps_service.providers.ratelimit import AccountGate
from rps_service.providers.tokens import Token, TokenCache
from rps_service.providers.vendor import Account, ProviderContext, VendorProvider
from rps_service.store.cluster import Claim, Claims
from tests.fakes import FakeSettings

QUIET = FORGET_AFTER  # ten minutes


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- a vendor with a token cache, in tenant mode ------------------------------------------


class Stored:
    """The credentials table: what ``PUT /providers/{p}/credentials/{server}`` wrote."""

    def __init__(self) -> None:
        self.rows: dict[int, Credentials] = {}

    def put(self, server: int, key_id: str, secret: str) -> None:
        self.rows[server] = Credentials("forgetful", server, {"access_key_id": key_id,
                                                             "access_key_secret": secret})

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        return self.rows.get(server)


class Forgetful(VendorProvider):
    """A bearer-token vendor: a token request, then the call, both under the account's
    rate."""

    name = "forgetful"
    label = "Forgetful"
    service = "Forgetful"
    settings_class = FakeSettings

    def __init__(self, settings: FakeSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.tokens: TokenCache[Account] = TokenCache(self._token, clock=context.clock)

    async def _token(self, account: Account, previous: Token | None, mac: str) -> Token:
        await self.request(account, "POST", "https://v.test/token", operation="token")
        return Token(f"token-of-{account.text('access_key_id')}", self.clock() + 86_400)

    def forget_accounts(self, keys: frozenset[str]) -> None:
        super().forget_accounts(keys)
        self.tokens.forget_accounts(keys)

    async def vendor_register(self, account: Account, device: Device) -> None:
        await self.tokens.get(account)
        await self.request(account, "PUT", f"https://v.test/{device.mac}",
                           operation="register")

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        pass

    async def vendor_check(self, account: Account) -> str:
        return "ok"


def vendor(clock: Clock, rate_limit: float = 1000.0) -> tuple[Forgetful, Stored, list[float]]:
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        return httpx.Response(200, json={})

    stored = Stored()
    settings = FakeSettings(enabled=True, rate_limit=rate_limit)
    context = ProviderContext(mode="tenant", retry_cap=3600, credentials=stored,
                              transport=httpx.MockTransport(answer), clock=clock,
                              monotonic=clock)
    return Forgetful(settings, context), stored, sent


DEVICE = Device(mac="000413000008", server=8, url="https://pbx.test/ztprov/8/")


async def account_key(provider: Forgetful, server: int = 8) -> str:
    return (await provider.account(server)).key


async def test_a_rotated_accounts_gate_token_and_credentials_go_once_idle() -> None:
    clock = Clock()
    provider, stored, _ = vendor(clock)
    stored.put(8, "old-key", "old-secret")
    await provider.register(DEVICE)
    old = await provider.account(8)
    stored.put(8, "new-key", "new-secret")  # the tenant's keys rotated
    clock.now += 300
    await provider.register(DEVICE)
    new = await provider.account(8)
    assert old.key != new.key and provider.tokens.latest(old) is not None

    clock.now += QUIET - 299  # the old account unused for ten minutes, the new for five
    assert provider.forget_idle(QUIET) == {old.key}
    assert provider.tokens.latest(old) is None  # its token (a secret) went with it
    assert provider.tokens.latest(new) is not None
    assert provider.forget_idle(QUIET) == frozenset()  # the new one is still in use

    clock.now += QUIET
    assert provider.forget_idle(QUIET) == {new.key}
    await provider.register(DEVICE)  # a fresh gate and token, as for a new account
    assert provider.tokens.latest(new) is not None


async def test_a_removed_servers_credentials_are_not_kept() -> None:
    clock = Clock()
    provider, stored, _ = vendor(clock)
    stored.put(8, "key-8", "secret-8")
    await provider.register(DEVICE)
    key = await account_key(provider)
    del stored.rows[8]  # the server removed
    clock.now += QUIET + 1
    assert provider.forget_idle(QUIET) == {key}
    assert not provider._accounts  # no secret of it is held any more


async def test_a_paused_gate_is_kept_until_its_pause_is_over() -> None:
    clock = Clock()
    provider, stored, _ = vendor(clock)
    stored.put(8, "key-8", "secret-8")
    await provider.register(DEVICE)
    key = await account_key(provider)
    provider.http.gate(key).pause(3000)  # a long Retry-After (retry_cap 3600)
    clock.now += QUIET + 1
    assert provider.forget_idle(QUIET) == frozenset()
    clock.now = 100 + 3000 - 1
    assert provider.forget_idle(QUIET) == frozenset()  # paused for one second more
    clock.now += 1
    assert provider.forget_idle(QUIET) == {key}


async def test_a_pause_seen_from_another_instance_keeps_the_gate() -> None:
    clock = Clock()
    http, _ = counted_http(clock, rate=5)
    gate = http.gate("a")
    clock.now += QUIET
    gate.hold(clock.now + 30)  # the cluster applied another instance's pause
    assert http.forget_idle(QUIET) == frozenset()
    clock.now += 30
    assert http.forget_idle(QUIET) == {"a"}


def test_a_gate_with_a_claimed_slot_is_kept() -> None:
    clock = Clock()
    http, _ = counted_http(clock, rate=10)
    gate = http.gate("a")
    gate.reserve()  # 100
    assert gate.claim() == 100.1  # the scheduler handed its event to a worker
    clock.now = 100.7
    assert http.forget_idle(0.5) == frozenset()  # the worker's request is to go in it
    assert gate.take_claim() == 100.1
    assert http.forget_idle(0.5) == {"a"}
    gate = http.gate("b")
    gate.claim()  # a claim whose event never sent anything (it failed before a request)
    clock.now += 1.5
    assert http.forget_idle(0.5) == {"b"}  # is stale, and holds nothing


async def test_a_gate_with_a_call_under_way_is_kept() -> None:
    clock = Clock()
    http, _ = counted_http(clock, rate=5)
    http.gate("a")
    with http.using("a"):  # e.g. a reconcile's listing, between two pages
        clock.now += QUIET
        assert http.forget_idle(QUIET) == frozenset()
    assert http.forget_idle(QUIET) == {"a"}


def event(event_id: int, server: int = 8) -> Event:
    now = datetime(2026, 1, 1)
    return Event(id=event_id, action="add", provider="forgetful", server=server,
                 mac="000413000008", payload={}, state="running", attempts=1,
                 created_at=now, updated_at=now, next_attempt_at=now, lease_until=now,
                 last_error=None, idempotency_key=None, slot=0)


def lane_distributor(provider: Forgetful, clock: Clock) -> Distributor:
    settings = GeneralSettings.model_validate({"queuenum": 2, "queuecap": 10})
    distributor = Distributor(None, settings, "me",  # type: ignore[arg-type]
                              lanes=lambda _, server: provider.lane(server), monotonic=clock)

    def forget(quiet: float, keep: frozenset[str]) -> None:
        provider.forget_idle(quiet, keep)

    distributor.on_forget = forget
    return distributor


async def test_a_gate_whose_lane_holds_an_event_is_kept() -> None:
    """A lane of a paused-then-idle account still holds an event: its gate stays (the lane
    keeps its object, so it must stay the provider's one gate of the account); once the
    event is done and ten minutes pass, lane, look-up and gate all go."""
    clock = Clock()
    provider, stored, _ = vendor(clock)
    stored.put(8, "key-8", "secret-8")
    distributor = lane_distributor(provider, clock)
    waiting = event(1)
    distributor.board.add(await distributor.lane_for("forgetful", 8), waiting)
    key = await account_key(provider)
    clock.now += QUIET + 60
    distributor.forget_idle()
    assert [lane.key for lane in distributor.board] == [key]
    gate = provider.http.gate(key)
    lane_id = distributor.lane_of("forgetful", 8)
    assert lane_id is not None and lane_id.gate is gate

    picked, _ = distributor.board.pick(2)
    assert picked is waiting
    clock.now += QUIET
    distributor.forget_idle()
    assert [lane.key for lane in distributor.board] == [key]  # its call is under way
    distributor.board.ended(waiting)
    clock.now += QUIET
    distributor.forget_idle()
    assert list(distributor.board) == []
    assert distributor.lane_of("forgetful", 8) is None
    assert provider.http.gate(key) is not gate  # a fresh one: the old one was dropped


def test_lanes_go_only_when_nothing_waits_or_runs() -> None:
    clock = Clock()
    board = LaneBoard(workers=2, clock=clock)
    idle, busy = event(1, server=1), event(2, server=2)
    board.add(LaneId("a", "forgetful", "server 1", None), idle)
    board.add(LaneId("b", "forgetful", "server 2", None), busy)
    assert board.pick(2)[0] is idle
    board.ended(idle)
    clock.now += 10
    board.forget_idle(10)
    assert [lane.key for lane in board] == ["b"]  # "a" idle ten seconds; "b" waits
    board.forget_idle(0)
    assert [lane.key for lane in board] == ["b"]


# -- the rate across a forget -------------------------------------------------------------


async def test_the_rate_holds_across_a_forget() -> None:
    """One call every 1000 s: a gate is not forgotten before its interval is over, so the
    fresh one's first call never comes sooner than the old one's next slot would."""
    clock = Clock()
    http, sent = counted_http(clock, rate=0.001)
    await call(http)
    clock.now += QUIET + 1
    assert http.forget_idle(QUIET) == frozenset()  # the interval (1000 s) is not over
    clock.now = sent[-1] + 1000
    assert http.forget_idle(QUIET) == {"a"}
    await call(http)
    assert sent == [100.0, 1100.0]


def counted_http(clock: Clock, rate: float) -> tuple[VendorHttp, list[float]]:
    """A vendor client whose waits move ``clock``; the times its requests arrive."""
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        return httpx.Response(200)

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    return VendorHttp(name="v", label="V", transport=httpx.MockTransport(answer), timeout=5,
                      rate_limit=rate, retry_cap=60, monotonic=clock, sleep=sleep), sent


async def call(http: VendorHttp) -> None:
    await http.send(httpx.Request("GET", "https://v.test/"), account="a", operation="x")


@settings(max_examples=60, deadline=None)
@given(rate=st.sampled_from([0.01, 0.5, 1, 5, 50]),
       steps=st.lists(st.tuples(st.floats(0, 30), st.floats(0, 5), st.booleans()),
                      min_size=2, max_size=40))
def test_sends_stay_an_interval_apart_however_often_gates_are_forgotten(
        rate: float, steps: Sequence[tuple[float, float, bool]]) -> None:
    """Calls at random moments, with forgets (of any quiet period) between them: the
    receiver never sees two calls closer than the rate's interval."""
    sent = asyncio.run(_calls_with_forgets(rate, steps))
    assert all(b - a >= 1 / rate - 1e-9 for a, b in itertools.pairwise(sent))


async def _calls_with_forgets(rate: float, steps: Sequence[tuple[float, float, bool]]
                              ) -> list[float]:
    clock = Clock()
    http, sent = counted_http(clock, rate)
    for wait, quiet, claim in steps:
        clock.now += wait
        http.forget_idle(quiet)
        if claim:
            http.gate("a").claim()  # the scheduler's claim, taken by the call
        await call(http)
    return sent


# -- the cluster's claims -----------------------------------------------------------------


class Shared:
    """The shared tables, as one instance alone on the database sees them."""

    def __init__(self) -> None:
        self.claimed: list[str] = []
        self.pauses: list[tuple[str, float]] = []

    def account_id(self, key: str) -> str:
        return f"id-{key}"

    async def beat_rate_claims(self, owner: str, accounts: Sequence[str], ttl: float,
                               dropped: Sequence[str] = ()) -> Claims:
        self.claimed = [a for a in (*self.claimed, *accounts) if a not in dropped]
        since = datetime(2026, 1, 1, tzinfo=UTC)
        return Claims(since + timedelta(seconds=60),
                      [Claim(a, owner, since) for a in dict.fromkeys(self.claimed)])

    async def account_pauses(self) -> list[tuple[str, float]]:
        return self.pauses

    async def share_pause(self, account_id: str, seconds: float) -> None:
        self.pauses.append((account_id, seconds))


async def test_the_cluster_forgets_an_account_once_its_claim_is_given_back() -> None:
    clock = Clock()
    shared = Shared()
    cluster = Cluster(shared, "me", lease_timeout=30, clock=clock)  # type: ignore[arg-type]
    gate = AccountGate(10, cap=60, clock=clock)
    waiting = asyncio.create_task(cluster.ready("a", gate, 10))
    await asyncio.sleep(0)
    await cluster.beat()
    await waiting
    assert shared.claimed == ["id-a"] and gate.rate == 10
    clock.now += QUIET
    assert cluster.forget_idle(QUIET) == {"a"}  # claimed: the heartbeat holds its gate
    await cluster.beat()  # unused: the claim is given back
    assert shared.claimed == [] and gate.rate == 0
    assert cluster.forget_idle(QUIET, keep={"a"}) == {"a"}  # a lane still holds it
    assert cluster.forget_idle(QUIET) == frozenset()


async def test_an_account_back_after_a_forget_is_held_by_a_pause_at_once() -> None:
    """Another instance paused the account: an account forgotten here, then back, sends
    nothing before that pause is over, even when its first heartbeat comes before the next
    read of the pauses."""
    clock = Clock()
    shared = Shared()
    cluster = Cluster(shared, "me", lease_timeout=30, clock=clock)  # type: ignore[arg-type]
    shared.pauses = [("id-a", 30.0)]
    await cluster.exchange_pauses()
    fresh = AccountGate(10, cap=60, clock=clock)
    waiting = asyncio.create_task(cluster.ready("a", fresh, 10))
    await asyncio.sleep(0)
    await cluster.beat()
    await waiting
    assert fresh.paused_until == 130.0 and fresh.next_slot() == 130.0


# -- the caches ---------------------------------------------------------------------------


def test_caches_drop_the_entries_of_forgotten_accounts() -> None:
    by_key = {"a": 1, "b": 2}
    by_pair = {("a", "https://x/"): 1, ("b", "https://x/"): 2}
    drop_accounts(by_key, {"a"})
    drop_accounts(by_pair, {"a"})
    assert by_key == {"b": 2} and by_pair == {("b", "https://x/"): 2}


async def test_created_once_forgets_the_keys_of_forgotten_accounts() -> None:
    once: CreatedOnce[tuple[str, str]] = CreatedOnce()
    runs: list[tuple[str, str]] = []

    async def create(key: tuple[str, str]) -> None:
        runs.append(key)

    for key in (("a", "srv"), ("b", "srv")):
        await once.ensure(key, functools.partial(create, key))
    once.forget_accounts({"a"})
    for key in (("a", "srv"), ("b", "srv")):
        await once.ensure(key, functools.partial(create, key))
    assert runs == [("a", "srv"), ("b", "srv"), ("a", "srv")]
