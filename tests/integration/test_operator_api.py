"""The API as an operator's console uses it: device paging, the provider list, the batch
limit's answer; on SQLite and MariaDB."""

from __future__ import annotations

from typing import Any

from tests.console import add_devices, running


def _device_events(count: int) -> list[dict[str, Any]]:
    return [{"action": "add", "provider": ("fake", "other")[i % 2], "mac": f"0004130{i:05X}",
             "server": 1 + i % 3, "name": f"Phone {i}"} for i in range(count)]


async def _pages(client: Any, params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    pages, after = [], None
    while True:
        query = dict(params, **({"after": after} if after else {}))
        r = await client.get("/devices", params=query)
        assert r.status_code == 200, r.text
        pages.append(r.json()["devices"])
        after = r.json()["next"]
        if after is None:
            return pages


async def test_devices_page_with_a_cursor_in_listing_order(make_settings: Any) -> None:
    async with running(make_settings()) as (_, client):
        await add_devices(client, _device_events(250))
        whole = (await client.get("/devices")).json()
        assert whole["next"] is None and len(whole["devices"]) == 250
        order = [(d["server"], d["provider"], d["mac"]) for d in whole["devices"]]
        assert order == sorted(order)

        pages = await _pages(client, {"limit": 40})
        assert [len(p) for p in pages] == [40] * 6 + [10]
        assert [d for page in pages for d in page] == whole["devices"]

        first = (await client.get("/devices", params={"limit": 40, "count": "true"})).json()
        assert first["total"] == 250
        last = pages[0][-1]
        assert first["next"] == f"{last['server']}:{last['provider']}:{last['mac']}"
        assert "total" not in (await client.get("/devices", params={"limit": 1})).json()

        filtered = await _pages(client, {"limit": 7, "server": 2, "provider": "other",
                                         "status": "registered"})
        rows = [d for page in filtered for d in page]
        expected = [e for e in _device_events(250)
                    if e["server"] == 2 and e["provider"] == "other"]
        assert len(rows) == len(expected) == 42
        assert all(d["server"] == 2 and d["provider"] == "other" for d in rows)
        counted = await client.get("/devices", params={"server": 2, "provider": "other",
                                                       "count": "true", "limit": 1})
        assert counted.json()["total"] == 42


async def test_device_paging_refusals(make_settings: Any) -> None:
    async with running(make_settings()) as (_, client):
        for params, named in (({"after": "nope"}, "after"), ({"after": "1:fake:00041"}, "after"),
                              ({"after": "x:fake:000413000001"}, "after"),
                              ({"count": "yes"}, "count"), ({"limit": 0}, "limit"),
                              ({"offset": 5}, "offset")):
            r = await client.get("/devices", params=params)
            assert r.status_code == 400, params
            assert named in r.json()["error"]
        r = await client.get("/devices", params={"after": "9:fake:FFFFFFFFFFFF"})
        assert r.json() == {"devices": [], "next": None}


async def test_providers_lists_the_enabled_ones(make_settings: Any) -> None:
    async with running(make_settings()) as (_, client):
        r = await client.get("/providers")
        assert r.status_code == 200
        assert r.json() == {"providers": [{"name": "fake"}, {"name": "other"}]}


async def test_a_batch_over_the_limit_names_it_in_error(make_settings: Any) -> None:
    async with running(make_settings()) as (_, client):
        event = {"action": "add", "provider": "fake", "mac": "000413000001"}
        r = await client.post("/events", json=[event] * 1001)
        assert r.status_code == 400
        body = r.json()
        assert body["error"] == "at most 1000 events per request (got 1001)"
        assert body["details"] == [{"index": 1000, "field": "",
                                    "message": "event 1000 and after are over the limit of "
                                               "1000 events per request"}]
        r = await client.post("/events", json=[])
        assert r.status_code == 400 and r.json()["error"] == "the array holds no events"
        assert (await client.get("/events")).json()["events"] == []
        assert (await client.post("/events", json=[event] * 1000)).status_code == 202
