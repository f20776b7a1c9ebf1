"""The store's part of the phone's side, on SQLite and on MariaDB: the tenants'
provisioning details, the ztprov fetch on the device row, and migration 2 over old data."""

from __future__ import annotations

from datetime import datetime, timedelta

from rps_service.clock import utcnow
from rps_service.models import AccessDetails, NewEvent, ServerProvisioning
from rps_service.store import DeviceOutcome, Store


async def _registered_device(store: Store, mac: str = "000413ABCDEF") -> None:
    await store.insert_events([NewEvent("add", "snom", 8, mac, {"model": "D717"})], utcnow())
    [leased] = (await store.lease_events("me", utcnow(), utcnow() + timedelta(seconds=60), 1,
                                         1, [0])).events
    access = ("https://pbx/ztprov/8/", AccessDetails("ztp-user", "p" * 24))
    await store.finish_event(leased, "me", "done", utcnow(), device=DeviceOutcome(
        "registered", registered=True, access=access))


async def test_server_provisioning_roundtrip(store: Store) -> None:
    assert await store.get_server_provisioning(8) is None
    await store.put_server_provisioning(
        ServerProvisioning(8, "https://pbx/prov/", "u1", "pw1"), utcnow())
    await store.put_server_provisioning(
        ServerProvisioning(8, "https://pbx/prov/?t=8&x='y'", "u2", "p'w?%s"), utcnow())
    got = await store.get_server_provisioning(8)
    assert got is not None
    assert (got.server, got.prov_url, got.http_user, got.http_password) == (
        8, "https://pbx/prov/?t=8&x='y'", "u2", "p'w?%s")
    assert isinstance(got.updated_at, datetime)
    assert "p'w" not in repr(got)
    assert await store.get_server_provisioning(9) is None


async def test_ztp_fetch_recorded_on_the_device(store: Store) -> None:
    await _registered_device(store)
    device = await store.get_device("snom", "000413ABCDEF")
    assert device is not None
    assert (device.server, device.http_username, device.http_password) == (8, "ztp-user",
                                                                          "p" * 24)
    assert device.ztp_fetched_at is None
    assert await store.get_device("snom", "000413000000") is None
    now = utcnow()
    await store.record_ztp_fetch("snom", "000413ABCDEF", "D785", "10.1.33.33", "10.0.0.5", now)
    device = await store.get_device("snom", "000413ABCDEF")
    assert device is not None
    assert (device.ztp_model, device.ztp_firmware, device.ztp_ip) == (
        "D785", "10.1.33.33", "10.0.0.5")
    assert device.ztp_fetched_at is not None
    assert abs((device.ztp_fetched_at - now).total_seconds()) < 1.01
    shown = device.to_json()
    assert shown["ztp_model"] == "D785" and shown["ztp_fetched_at"].endswith("Z")
    [listed] = await store.list_devices(server=8)
    assert listed.ztp_firmware == "10.1.33.33"
