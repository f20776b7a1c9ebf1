"""The shared-state queries of several instances (docs/instances.md), on SQLite and MariaDB:
rate claims by heartbeat, pauses, nonce keys and nonce counts."""

from __future__ import annotations

import asyncio

from rps_service.store import Store
from tests.conftest import use_new_key


async def test_claims_are_shared_and_ordered_by_age(store: Store) -> None:
    first = await store.beat_rate_claims("a", ["acct1", "acct2"], 5.0)
    assert [(c.account, c.owner) for c in first.claims] == [("acct1", "a"), ("acct2", "a")]
    await asyncio.sleep(0.01)
    second = await store.beat_rate_claims("b", ["acct1"], 5.0)
    assert [c.owner for c in second.claims] == ["a", "b"]  # oldest claim first
    again = await store.beat_rate_claims("a", ["acct1"], 5.0)  # acct2 no longer busy
    assert [(c.account, c.owner) for c in again.claims] == [("acct1", "a"), ("acct1", "b")]
    assert again.claims[0].since == first.claims[0].since  # a live claim keeps its age
    await store.drop_rate_claims("a", after=0.1)
    await asyncio.sleep(0.2)
    left = await store.beat_rate_claims("b", ["acct1", "acct2"], 5.0)
    assert [(c.account, c.owner) for c in left.claims] == [("acct1", "b"), ("acct2", "b")]


async def test_an_expired_claim_is_not_alive_and_starts_anew(store: Store) -> None:
    old = await store.beat_rate_claims("a", ["acct"], 0.2)
    await store.beat_rate_claims("b", ["acct"], 5.0)
    await asyncio.sleep(0.3)
    seen = await store.beat_rate_claims("b", ["acct"], 5.0)
    assert [c.owner for c in seen.claims] == ["b"]  # a's claim expired
    back = await store.beat_rate_claims("a", ["acct"], 5.0)
    assert [c.owner for c in back.claims] == ["b", "a"]  # a comes back as the newest
    assert back.claims[1].since > old.claims[0].since


async def test_pauses_are_shared_and_the_longest_wins(store: Store) -> None:
    assert await store.account_pauses() == []
    await store.share_pause("acct", 5.0)
    await store.share_pause("acct", 1.0)  # a shorter one does not cut it
    await store.share_pause("other", 0.1)
    paused = dict(await store.account_pauses())
    assert 4.0 < paused["acct"] <= 5.0
    await asyncio.sleep(0.2)
    assert list(dict(await store.account_pauses())) == ["acct"]


async def test_nonce_keys_are_made_once_and_read_alike(store: Store) -> None:
    keys = await store.nonce_keys([9, 10, 11])
    assert sorted(keys) == [9, 10, 11] and len(set(keys.values())) == 3
    assert await store.nonce_keys([10, 11, 12]) == {**{p: keys[p] for p in (10, 11)},
                                                     12: (await store.nonce_keys([12]))[12]}


async def test_nonce_keys_sealed_with_an_old_secret_key_are_replaced(store: Store) -> None:
    keys = await store.nonce_keys([1])
    await use_new_key(store)  # as after a rotation that did not re-seal these
    fresh = await store.nonce_keys([1])
    assert fresh[1] != keys[1]


async def test_a_nonce_count_is_accepted_once(store: Store) -> None:
    assert await store.use_nonce_count("n" * 43, 1, 60)
    assert not await store.use_nonce_count("n" * 43, 1, 60)  # replayed
    assert await store.use_nonce_count("n" * 43, 3, 60)
    assert not await store.use_nonce_count("n" * 43, 2, 60)  # lower than one used
    assert await store.use_nonce_count("m" * 43, 1, 60)
