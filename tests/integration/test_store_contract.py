"""The store contract, run against SQLite and the real MariaDB alike."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from rps_service.clock import utcnow
from rps_service.models import AccessDetails, Credentials, NewEvent
from rps_service.store import DeviceOutcome, Store
from rps_service.store.base import device_slot


def ev(mac: str, action: str = "add", key: str | None = None, server: int | None = 1
       ) -> NewEvent:
    return NewEvent(action, "snom", server, mac, {"model": "D717"}, key)


def creds(server: int, key_id: str, secret: str, url: str | None = None) -> Credentials:
    return Credentials("snom", server, {"access_key_id": key_id, "access_key_secret": secret},
                       url)


async def lease_all(store: Store, owner: str = "me", limit: int = 100, queuenum: int = 1
                    ) -> list[int]:
    now = utcnow()
    leased = await store.lease_events(owner, now, now + timedelta(seconds=60), limit,
                                      queuenum, list(range(queuenum)))
    return [e.id for e in leased.events]


async def test_insert_is_durable_and_readable(store: Store) -> None:
    stored = await store.insert_events([ev("000413ABCDEF")], utcnow())
    event = await store.get_event(stored[0].id)
    assert event is not None
    assert (event.action, event.mac, event.state, event.attempts) == (
        "add", "000413ABCDEF", "pending", 0)
    assert event.payload == {"model": "D717"}
    assert event.slot == device_slot("snom", "000413ABCDEF")


async def test_batch_ids_follow_order(store: Store) -> None:
    macs = [f"0004130000{i:02X}" for i in range(50)]
    stored = await store.insert_events([ev(m) for m in macs], utcnow())
    ids = [s.id for s in stored]
    assert ids == sorted(ids) and len(set(ids)) == 50
    for mac, row in zip(macs, stored, strict=True):
        event = await store.get_event(row.id)
        assert event is not None and event.mac == mac


async def test_idempotency_key_returns_first_id(store: Store) -> None:
    first = await store.insert_events([ev("000413ABCDEF", key="gui-1")], utcnow())
    again = await store.insert_events(
        [ev("000413ABCDEF", key="gui-1"), ev("000413ABCDE0", key="gui-2"),
         ev("000413ABCDE0", key="gui-2")], utcnow())
    assert again[0].id == first[0].id and again[0].duplicate
    assert not again[1].duplicate
    assert again[2].id == again[1].id and again[2].duplicate
    assert len(await store.list_events()) == 2


async def test_lease_takes_only_oldest_unfinished_event_per_device(store: Store) -> None:
    stored = await store.insert_events(
        [ev("000000000001", "remove"), ev("000000000002"), ev("000000000001", "add"),
         ev("000000000003")], utcnow())
    ids = [s.id for s in stored]
    assert await lease_all(store) == [ids[0], ids[1], ids[3]]
    assert await lease_all(store) == []  # the device's second event waits for the first
    event = await store.get_event(ids[0])
    assert event is not None
    assert await store.finish_event(event, "me", "done", utcnow())
    assert await lease_all(store) == [ids[2]]


async def test_lease_counts_attempts_and_other_owner_cannot_finish(store: Store) -> None:
    stored = await store.insert_events([ev("000000000001")], utcnow())
    now = utcnow()
    [event] = (await store.lease_events("me", now, now + timedelta(seconds=60), 10, 1,
                                        [0])).events
    assert event.attempts == 1 and event.state == "running"
    assert not await store.finish_event(event, "someone-else", "done", utcnow())
    assert await store.finish_event(event, "me", "done", utcnow())
    row = await store.get_event(stored[0].id)
    assert row is not None and row.state == "done"


async def test_lease_respects_queue_filter(store: Store) -> None:
    macs = [f"00041300{i:04X}" for i in range(40)]
    await store.insert_events([ev(m) for m in macs], utcnow())
    now = utcnow()
    events = (await store.lease_events("me", now, now + timedelta(seconds=60), 100, 4,
                                       [2])).events
    assert events and all(e.slot % 4 == 2 for e in events)
    assert len(events) == sum(1 for m in macs if device_slot("snom", m) % 4 == 2)


async def test_expired_lease_is_recovered(store: Store) -> None:
    stored = await store.insert_events([ev("000000000001")], utcnow())
    await store.lease_events("crashed", utcnow(), utcnow() - timedelta(seconds=1), 10, 1, [0])
    assert await lease_all(store) == []
    assert await store.release_expired_leases(utcnow()) == [stored[0].id]
    leased = await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 10, 1,
                                      [0])
    assert [e.id for e in leased.events] == [stored[0].id]
    assert leased.events[0].attempts == 2  # the crashed attempt counts


async def test_release_gives_back_without_counting(store: Store) -> None:
    stored = await store.insert_events([ev("000000000001")], utcnow())
    assert await lease_all(store) == [stored[0].id]
    assert await store.release_leases("me", [stored[0].id], utcnow()) == 1
    event = await store.get_event(stored[0].id)
    assert event is not None and (event.state, event.attempts) == ("pending", 0)


async def test_backoff_delays_lease_and_next_due(store: Store) -> None:
    stored = await store.insert_events([ev("000000000001")], utcnow())
    [event] = (await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 1,
                                        1, [0])).events
    later = utcnow() + timedelta(seconds=30)
    await store.finish_event(event, "me", "pending", utcnow(), error="503", next_attempt_at=later)
    assert await lease_all(store) == []
    due = await store.next_due()
    assert due is not None and abs((due - later).total_seconds()) < 0.01
    row = await store.get_event(stored[0].id)
    assert row is not None and row.last_error == "503"


async def test_retry_event_only_from_failed(store: Store) -> None:
    stored = await store.insert_events([ev("000000000001")], utcnow())
    event_id = stored[0].id
    assert await store.retry_event(event_id, utcnow()) == "pending"
    assert await store.retry_event(event_id + 1000, utcnow()) == "not_found"
    [event] = (await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 1,
                                        1, [0])).events
    await store.finish_event(event, "me", "failed", utcnow(), error="403: Forbidden")
    assert await store.retry_event(event_id, utcnow()) == "ok"
    row = await store.get_event(event_id)
    assert row is not None and (row.state, row.attempts, row.last_error) == (
        "pending", 0, "403: Forbidden")


async def test_device_access_details_kept_then_revoked(store: Store) -> None:
    await store.insert_events([ev("000413ABCDEF", server=8)], utcnow())
    [leased] = (await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 1,
                                         1, [0])).events
    access = ("https://pbx/ztprov/8/", AccessDetails("u1", "p" * 24))
    await store.finish_event(leased, "me", "done", utcnow(),
                             device=DeviceOutcome("registered", registered=True,
                                                  access=access))
    device = await store.get_device("snom", "000413ABCDEF")
    assert device is not None
    assert (device.url, device.http_username, device.http_password) == (
        "https://pbx/ztprov/8/", "u1", "p" * 24)
    device = await store.get_device("snom", "000413ABCDEF")
    assert device is not None
    assert (device.status, device.last_message, device.server) == ("registered", "-", 8)
    assert device.registered_at is not None and device.model == "D717"
    removal = await store.insert_events([ev("000413ABCDEF", "remove", server=8)], utcnow())
    [leased] = (await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 1,
                                         1, [0])).events
    assert leased.id == removal[0].id
    await store.finish_event(leased, "me", "done", utcnow(),
                             device=DeviceOutcome("unregistered", revoke=True))
    device = await store.get_device("snom", "000413ABCDEF")
    assert device is not None and device.status == "unregistered"
    assert device.http_username is None and device.http_password is None


async def test_outcomes_finished_together_each_keep_their_own(store: Store) -> None:
    """Concurrent outcomes share a transaction; each event and device row gets its own."""
    macs = [f"00041300000{i}" for i in range(6)]
    await store.insert_events([ev(macs[0], server=3)], utcnow())
    [first] = (await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 1,
                                        1, [0])).events
    await store.finish_event(first, "me", "done", utcnow(), device=DeviceOutcome(
        "registered", registered=True, access=("https://pbx/3/", AccessDetails("old", "o" * 24))))
    stored = await store.insert_events(
        [ev(macs[0], "remove", server=3)] + [ev(m, server=3) for m in macs[1:]], utcnow())
    leased = (await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 10,
                                       1, [0])).events
    assert [e.id for e in leased] == [s.id for s in stored]
    later = utcnow() + timedelta(minutes=5)
    outcomes = [
        ("done", None, None, DeviceOutcome("unregistered", revoke=True)),
        ("done", None, None, DeviceOutcome("registered", registered=True,
                                           access=("https://pbx/3/",
                                                   AccessDetails("u1", "a" * 24)))),
        ("done", None, None, DeviceOutcome("registered", registered=True,
                                           access=("https://pbx/3/",
                                                   AccessDetails("u2", "b" * 24)))),
        ("failed", "403: no Role", None, DeviceOutcome("error", "403: no Role")),
        ("pending", "503: busy", later, DeviceOutcome("pending", "503: busy (retrying)")),
        ("done", None, None, None),
    ]
    results = await asyncio.gather(*(
        store.finish_event(event, "me", state, utcnow(), error=error, next_attempt_at=at,
                           device=device)
        for event, (state, error, at, device) in zip(leased, outcomes, strict=True)))
    assert results == [True] * 6
    rows = [await store.get_event(e.id) for e in leased]
    assert [(r.state, r.last_error) for r in rows if r] == [
        ("done", None), ("done", None), ("done", None), ("failed", "403: no Role"),
        ("pending", "503: busy"), ("done", None)]
    retry_at = rows[4].next_attempt_at if rows[4] else None
    assert retry_at is not None and abs((retry_at - later).total_seconds()) < 1
    devices = [await store.get_device("snom", m) for m in macs]
    assert [(d.status, d.last_message) for d in devices if d] == [
        ("unregistered", "-"), ("registered", "-"), ("registered", "-"),
        ("error", "403: no Role"), ("pending", "503: busy (retrying)"),
        # An outcome without a device part leaves the row the intake wrote as it was.
        ("pending", "-")]
    revoked, one, two = devices[0], devices[1], devices[2]
    assert revoked is not None and revoked.http_password is None and revoked.url is None
    assert one is not None and (one.http_username, one.http_password) == ("u1", "a" * 24)
    assert two is not None and (two.http_username, two.http_password) == ("u2", "b" * 24)
    assert one.model == "D717" and one.server == 3 and one.registered_at is not None


async def test_a_lost_lease_among_outcomes_finished_together(store: Store) -> None:
    """One event's lease went to another owner: only that outcome is refused."""
    stored = await store.insert_events([ev(f"00041300001{i}") for i in range(4)], utcnow())
    leased = (await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 10,
                                       1, [0])).events
    # The leases ran out; another instance took the first event, this one the others.
    later = utcnow() + timedelta(seconds=61)
    assert await store.release_expired_leases(later)
    taken = (await store.lease_events("other", later, later + timedelta(seconds=60), 1,
                                      1, [0])).events
    assert [e.id for e in taken] == [stored[0].id]
    for event in leased[1:]:
        again = await store.lease_events("me", later, later + timedelta(seconds=60), 1, 1, [0])
        assert [e.id for e in again.events] == [event.id]
    registered = DeviceOutcome("registered", registered=True,
                               access=("u", AccessDetails("n", "p" * 24)))
    results = await asyncio.gather(*(
        store.finish_event(e, "me", "done", utcnow(), device=registered) for e in leased))
    assert results == [False, True, True, True]
    row = await store.get_event(stored[0].id)
    assert row is not None and row.state == "running"  # still the other owner's
    lost = await store.get_device("snom", leased[0].mac)
    assert lost is not None and lost.status == "pending"  # as the intake wrote it
    for event in leased[1:]:
        row = await store.get_event(event.id)
        device = await store.get_device("snom", event.mac)
        assert row is not None and row.state == "done"
        assert device is not None and device.status == "registered"


async def test_names_with_sql_metacharacters_stored_verbatim(store: Store) -> None:
    name = "Robert'); DROP TABLE rps_events;-- ? %s \\"
    stored = await store.insert_events(
        [NewEvent("add", "snom", 1, "000413ABCDEF", {"name": name}, "k'?%")], utcnow())
    event = await store.get_event(stored[0].id)
    assert event is not None and event.payload["name"] == name
    assert event.idempotency_key == "k'?%"


async def test_credentials_roundtrip(store: Store) -> None:
    await store.put_credentials(creds(8, "kid", "sec"), utcnow())
    await store.put_credentials(creds(8, "kid2", "sec2", "https://x/"), utcnow(),
                                id_key="access_key_id", secret_key="access_key_secret")
    found = await store.get_credentials("snom", 8)
    assert found is not None
    assert (found.text("access_key_id"), found.text("access_key_secret"),
            found.provisioning_url) == ("kid2", "sec2", "https://x/")
    assert await store.get_credentials("snom", 9) is None
    # Any provider's own keys, switches included.
    await store.put_credentials(Credentials("yealink", 8, {"access_key_id": "a",
                                                           "add_by_mac": True}), utcnow())
    yealink = await store.get_credentials("yealink", 8)
    assert yealink is not None and yealink.flag("add_by_mac") is True
    # A row written before the params column existed still reads.
    async with store.transaction() as tx:
        await tx.execute("UPDATE rps_credentials SET params = NULL WHERE provider = 'snom'")
    store._credentials.clear()
    old = await store.get_credentials("snom", 8)
    assert old is not None and old.text("access_key_secret") == "sec2"


async def test_access_details_are_written_ahead_and_kept(store: Store) -> None:
    first = await store.ensure_access("snom", "000413ABCDEF", 8, AccessDetails("u1", "p1"),
                                      utcnow())
    assert first == AccessDetails("u1", "p1")
    device = await store.get_device("snom", "000413ABCDEF")
    assert device is not None and (device.status, device.server) == ("pending", 8)
    # A retry's freshly generated details lose to the stored ones.
    again = await store.ensure_access("snom", "000413ABCDEF", 8, AccessDetails("u2", "p2"),
                                      utcnow())
    assert again == AccessDetails("u1", "p1")
    keyed = await store.ensure_access("fanvil", "0C383E000001", 8,
                                      AccessDetails(url_key="0123456789ab" + "k" * 24),
                                      utcnow())
    assert keyed.url_key == "0123456789ab" + "k" * 24
    found = await store.device_by_url_key("0123456789ab" + "k" * 24)
    assert found is not None and found.provider == "fanvil"
    # Found by the whole key's keyed hash: the selector alone, or another secret, is not it.
    assert await store.device_by_url_key("0123456789ab") is None
    assert await store.device_by_url_key("0123456789ab" + "j" * 24) is None
    # Concurrent cold registrations share a transaction; each keeps its own.
    many = await asyncio.gather(*(store.ensure_access(
        "snom", f"0004130001{i:02X}", 1, AccessDetails(f"u{i}", f"p{i}"), utcnow())
        for i in range(10)))
    assert [m.username for m in many] == [f"u{i}" for i in range(10)]
    shared = await store.ensure_server_access("poly", 8, AccessDetails("s1", "sp1"), utcnow())
    assert await store.ensure_server_access(
        "poly", 8, AccessDetails("s2", "sp2"), utcnow()) == shared


async def test_events_without_server_take_the_devices(store: Store) -> None:
    # Unknown device: an add without server goes to 1.
    [added] = await store.insert_events([ev("000413000001", server=None)], utcnow())
    assert (await store.get_event(added.id)).server == 1  # type: ignore[union-attr]
    # An add to 8 still pending: a remove (even one naming 3) and an add without server
    # follow it to 8.
    stored = await store.insert_events(
        [ev("000413000002", server=8), ev("000413000002", "remove", server=3),
         ev("000413000002", server=None)], utcnow())
    servers = [(await store.get_event(s.id)).server for s in stored]  # type: ignore[union-attr]
    assert servers == [8, 8, 8]
    # A registered device: update and remove use its row's server.
    await store.ensure_access("snom", "000413000003", 5, AccessDetails("u", "p"), utcnow())
    stored = await store.insert_events(
        [ev("000413000003", "update", server=None), ev("000413000003", "remove", server=2)],
        utcnow())
    assert [(await store.get_event(s.id)).server for s in stored] == [5, 5]  # type: ignore[union-attr]


async def test_retry_refused_when_a_newer_event_came(store: Store) -> None:
    [old] = await store.insert_events([ev("000413000009")], utcnow())
    await lease_all(store)
    event = await store.get_event(old.id)
    assert event is not None
    await store.finish_event(event, "me", "failed", utcnow(), error="403: Forbidden")
    [newer] = await store.insert_events([ev("000413000009", "remove")], utcnow())
    assert await store.retry_event(old.id, utcnow()) == f"newer:{newer.id}"


async def test_renew_reports_the_leases_still_held(store: Store) -> None:
    await store.insert_events([ev("000413000011"), ev("000413000012")], utcnow())
    ids = sorted(await lease_all(store))
    until = utcnow() + timedelta(seconds=60)
    assert await store.renew_leases("me", ids, until) == ids
    # One lease ran out and another instance took the event.
    await store.release_expired_leases(utcnow() + timedelta(seconds=120))
    await lease_all(store, owner="other", limit=1)
    assert await store.renew_leases("me", ids, until) == []


async def test_backlog_counts(store: Store) -> None:
    await store.insert_events([ev(f"00000000000{i}") for i in range(3)], utcnow())
    await lease_all(store, limit=1)
    assert await store.backlog() == {"pending": 2, "running": 1}


async def test_migrate_is_idempotent(store: Store) -> None:
    assert await store.migrate() == await store.migrate()


async def test_moot_pending_events_are_superseded(store: Store) -> None:
    stored = await store.insert_events(
        [ev("000000000001"), ev("000000000001", "update"), ev("000000000001", "remove"),
         ev("000000000002", "remove"), ev("000000000002"), ev("000000000003")], utcnow())
    ids = [s.id for s in stored]
    now = utcnow()
    leased = await store.lease_events("me", now, now + timedelta(seconds=60), 10, 1, [0])
    # Device 1: add and update are moot (a remove follows) -> only the remove is sent.
    # Device 2: a remove followed by an add is kept (the add sends fresh credentials).
    assert sorted((s.id, s.by) for s in leased.superseded) == [(ids[0], ids[2]),
                                                               (ids[1], ids[2])]
    assert [e.id for e in leased.events] == [ids[3], ids[5]]
    for event_id in ids[:2]:
        row = await store.get_event(event_id)
        assert row is not None and row.state == "superseded"
        assert row.last_error == f"superseded by event {ids[2]}"
    assert await lease_all(store) == [ids[2]]


def test_moot_events_rules() -> None:
    from rps_service.store.base import moot_events

    def moot(*actions: str) -> list[int]:
        return [m.id for m in moot_events(list(enumerate(actions, start=1)))]

    assert moot("add", "remove") == [1]
    assert moot("add", "add", "update") == [1]  # the update needs the add before it
    assert moot("add", "update", "update") == [2]
    assert moot("update", "add") == [1]
    assert moot("add", "update", "add") == [1, 2]
    assert moot("remove", "add") == []
    assert moot("remove", "remove") == [1]
    assert moot("add", "remove", "add") == [1]
    assert moot("remove", "add", "remove") == [1, 2]
    assert moot("add") == []


async def test_concurrent_migrations_on_a_fresh_database(mysql_database: str) -> None:
    import asyncio

    from rps_service.config import parse_database_url
    from rps_service.store import create_store

    stores = [create_store(parse_database_url(mysql_database)) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        versions = await asyncio.gather(*(s.migrate() for s in stores))
        assert len(set(versions)) == 1
        await stores[0].insert_events([ev("000413ABCDEF")], utcnow())
    finally:
        for s in stores:
            await s.close()


async def test_concurrent_inserts_and_keys(store: Store) -> None:
    import asyncio

    results = await asyncio.gather(
        *(store.insert_events([ev(f"0004130{i:05X}")], utcnow()) for i in range(64)),
        store.insert_events([ev("000413FFFFFF", key="same")], utcnow()),
        store.insert_events([ev("000413FFFFFF", key="same")], utcnow()),
    )
    ids = [r[0].id for r in results[:64]]
    assert len(set(ids)) == 64
    first, second = results[64][0], results[65][0]
    assert first.id == second.id and [first.duplicate, second.duplicate].count(True) == 1
    assert len(await store.list_events(limit=1000)) == 65


async def test_credentials_cache_sees_local_changes_at_once(store: Store) -> None:
    assert await store.get_credentials("snom", 3) is None  # a miss is cached too
    await store.put_credentials(creds(3, "kid", "sec"), utcnow())
    found = await store.get_credentials("snom", 3)
    assert found is not None and found.text("access_key_id") == "kid"


async def test_a_cancelled_transaction_leaves_the_store_usable(store: Store) -> None:
    """Stopping the daemon cancels tasks mid-transaction; the next ones must still work."""
    await store.insert_events([ev("000413ABCDEF")], utcnow())
    for turns in range(8):  # cancel at each await a transaction goes through
        task = asyncio.ensure_future(lease_all(store))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.release_expired_leases(utcnow() + timedelta(seconds=61))
        assert (await store.backlog())["pending"] + (await store.backlog())["running"] == 1
    stored = await store.insert_events([ev("000413ABCDE0")], utcnow())
    assert stored[0].id > 0


async def test_accepted_devices_show_pending_from_the_intake(store: Store) -> None:
    """The device row is written with the event: a new device appears pending, a known one
    shows pending until its event is finished; an update of a removed or unknown device
    (refused, never sent) leaves it alone."""
    new, removed, unknown = "000413AA0001", "000413AA0002", "000413AA0003"
    await store.insert_events([ev(removed, server=4)], utcnow())
    [event] = (await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 1,
                                        1, [0])).events
    await store.finish_event(event, "me", "done", utcnow(),
                             device=DeviceOutcome("unregistered", revoke=True))
    await store.insert_events([ev(new, server=4), ev(removed, "update"), ev(unknown, "update")],
                              utcnow())
    shown = await store.get_device("snom", new)
    assert shown is not None and (shown.status, shown.server, shown.last_message) == (
        "pending", 4, "-")
    kept = await store.get_device("snom", removed)
    assert kept is not None and kept.status == "unregistered"
    assert await store.get_device("snom", unknown) is None
    await store.insert_events([ev(removed, "remove")], utcnow())
    again = await store.get_device("snom", removed)
    assert again is not None and again.status == "pending"
