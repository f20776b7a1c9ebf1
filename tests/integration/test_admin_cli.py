"""The admin commands (``rps-service events|retry|devices|send|test``) against a running
daemon: the in-process service with the test provider on a free port, rps.ini as the
commands read it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from rps_service import logs
from rps_service.cli import main
from rps_service.clock import utcnow
from rps_service.config import load_settings
from rps_service.models import NewEvent
from rps_service.providers.protocol import CheckResult
from rps_service.service import Service
from tests.conftest import free_port, write_ini
from tests.fakes import ScriptedProvider, permanent
from tests.integration.test_pipeline import wait_events

TOKEN = "cli-token"


class RefusingProvider(ScriptedProvider):
    async def check_credentials(self, server: int) -> CheckResult:
        return CheckResult(False, f"SRAPS rejected the key for server {server}")


@dataclass
class Running:
    service: Service
    provider: ScriptedProvider
    ini: Path
    client: httpx.AsyncClient
    capsys: pytest.CaptureFixture[str]

    async def run(self, *args: str) -> tuple[int, str, str]:
        """``rps-service -c rps.ini ARGS`` in a thread (it blocks; the daemon is on our loop)."""
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, ["-c", str(self.ini), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    async def post(self, *events: dict[str, Any]) -> list[int]:
        r = await self.client.post("/events", json=list(events))
        assert r.status_code == 202, r.text
        ids = [e["id"] for e in r.json()["events"]]
        await wait_events(self.client, ids)
        return ids


@pytest.fixture
async def daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Running]:
    log_file = str(tmp_path / "rps.log")  # the daemon's lines must not mix with the command's
    sink = logs.configure(log_file)
    values = {"port": free_port(), "database": f"sqlite:///{tmp_path}/rps.db",
              "log_file": log_file,
              "poll_interval": 0.2, "retry_base": 0.01, "retry_cap": 0.05,
              "api_token": TOKEN, "queuenum": 2}
    ini = write_ini(tmp_path / "rps.ini", values)
    provider = ScriptedProvider()
    service = Service(load_settings(ini, env={}),
                      providers={"fake": provider, "refusing": RefusingProvider()})
    await service.start()
    client = httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10,
                               headers={"Authorization": f"Bearer {TOKEN}"})
    yield Running(service, provider, ini, client, capsys)
    await client.aclose()
    await service.stop()
    sink.close()
    structlog.reset_defaults()


def event(mac: str, action: str = "add", **extra: Any) -> dict[str, Any]:
    return {"action": action, "provider": "fake", "mac": mac, **extra}


async def test_events_table_and_json(daemon: Running) -> None:
    daemon.provider.script["000413000002"] = [permanent()]
    ok, failed = await daemon.post(event("000413000001"), event("000413000002", server=8))
    code, out, err = await daemon.run("events")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "STATE", "ACTION", "PROVIDER", "MAC", "SERVER", "ATTEMPTS",
                              "UPDATED", "(UTC)", "LAST", "ERROR"]
    assert [r.split()[:6] for r in rows] == [
        [str(failed), "failed", "add", "fake", "000413000002", "8"],
        [str(ok), "done", "add", "fake", "000413000001", "1"],
    ]
    assert rows[0].endswith("403: Forbidden") and rows[1].endswith("-")
    # Aligned: every column starts where its header does.
    assert rows[0].index("failed") == rows[1].index("done") == header.index("STATE")
    assert rows[0].index("000413000002") == header.index("MAC")

    code, out, _ = await daemon.run("events", "--state", "failed", "--json")
    assert code == 0
    body = json.loads(out)
    assert [(e["id"], e["state"], e["last_error"]) for e in body["events"]] == [
        (failed, "failed", "403: Forbidden")]
    code, out, _ = await daemon.run("events", "--state", "superseded")
    assert (code, out) == (0, "No events.\n")


async def test_retry(daemon: Running) -> None:
    daemon.provider.script["000413000003"] = [permanent()]
    [event_id] = await daemon.post(event("000413000003"))
    code, out, err = await daemon.run("retry", str(event_id))
    assert (code, out, err) == (0, f"Event {event_id} re-queued (state pending).\n", "")
    await wait_events(daemon.client, [event_id], ("done",))
    code, out, err = await daemon.run("retry", str(event_id))
    assert code == 1 and out == ""
    assert err == (f"rps-service retry: daemon answered 409: event {event_id} is done, "
                   "not failed\n")
    code, _, err = await daemon.run("retry", "99999", "--json")
    assert code == 1 and "daemon answered 404: no such event" in err


async def test_devices_with_filters(daemon: Running) -> None:
    daemon.provider.script["000413000005"] = [permanent()]
    await daemon.post(event("000413000004", server=8, model="D717", name="Front desk"),
                      event("000413000005", server=8), event("000413000006", server=9))
    code, out, err = await daemon.run("devices", "--server", "8")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.startswith("PROVIDER  MAC           SERVER  STATUS")
    assert len(rows) == 2
    by_mac = {r.split()[1]: r for r in rows}
    assert "registered" in by_mac["000413000004"] and "Front desk" in by_mac["000413000004"]
    assert by_mac["000413000005"].endswith("403: Forbidden")
    code, out, _ = await daemon.run("devices", "--status", "error", "--json")
    assert [d["mac"] for d in json.loads(out)["devices"]] == ["000413000005"]
    code, out, _ = await daemon.run("devices", "--mac", "00:04:13:00:00:06", "--json")
    [device] = json.loads(out)["devices"]
    assert device["server"] == 9 and "http_password" not in device
    code, out, _ = await daemon.run("devices", "--server", "77")
    assert (code, out) == (0, "No devices.\n")
    code, _, err = await daemon.run("devices", "--mac", "nope")
    assert code == 1 and "daemon answered 400: mac: must be 12 hex digits" in err


async def test_devices_lists_every_device_page_by_page(daemon: Running) -> None:
    """More devices than one page of the API (1000): all are listed; a --limit that cuts
    the list says so on stderr."""
    macs = [f"0004135{i:05X}" for i in range(2068)]
    now = datetime.now(UTC).replace(tzinfo=None)
    assert await daemon.service.store.adopt_devices(
        "fake", 3, [(mac, None) for mac in macs], "adopted", now) == 2068
    code, out, err = await daemon.run("devices", "--server", "3")
    assert (code, err) == (0, "")
    assert [line.split()[1] for line in out.splitlines()[1:]] == macs
    code, out, _ = await daemon.run("devices", "--server", "3", "--json")
    body = json.loads(out)
    assert [d["mac"] for d in body["devices"]] == macs and body["next"] is None
    code, out, err = await daemon.run("devices", "--server", "3", "--limit", "1500")
    assert code == 0 and len(out.splitlines()) == 1 + 1500
    assert err == ("1500 devices shown; more match (raise --limit, or filter with --server, "
                   "--provider, --status)\n")
    code, out, _ = await daemon.run("devices", "--server", "3", "--limit", "1500", "--json")
    body = json.loads(out)
    assert len(body["devices"]) == 1500 and body["next"] == f"3:fake:{macs[1499]}"


async def test_send_one_event(daemon: Running) -> None:
    code, out, err = await daemon.run("send", "add", "00:04:13:ee:ee:01", "--provider", "fake",
                                      "--server", "8", "--model", "D785", "--name", "Lab",
                                      "--extension", "1001")
    assert code == 0, err
    assert out.startswith("Event ") and out.endswith(" accepted: add fake 000413EEEE01 "
                                                    "server 8\n")
    event_id = int(out.split()[1])
    [row] = await wait_events(daemon.client, [event_id])
    assert row["state"] == "done"
    assert row["payload"] == {"model": "D785", "name": "Lab", "extension": "1001"}
    code, out, _ = await daemon.run("send", "remove", "000413EEEE01", "--provider", "fake",
                                    "--json")
    assert code == 0 and json.loads(out)["events"][0]["action"] == "remove"
    code, out, err = await daemon.run("send", "add", "000413XYZ", "--provider", "fake")
    assert code == 1 and out == ""
    assert err.startswith("rps-service send: daemon answered 400: invalid event: mac: must be "
                          "12 hex digits")
    code, _, err = await daemon.run("send", "add", "000413EEEE01")  # default provider: snom
    assert code == 1 and "provider" in err
    code, _, err = await daemon.run("send", "add")
    assert code == 2 and "give a MAC or --csv FILE" in err


async def test_send_wait_follows_the_event_to_its_end(daemon: Running) -> None:
    """``--wait``: the command returns once the vendor call is over, saying how it ended
    (a script can go on with the device registered, or stop on a failure)."""
    code, out, err = await daemon.run("send", "add", "000413EEEE11", "--provider", "fake",
                                      "--server", "8", "--wait")
    assert (code, out) == (0, "Event 1 done: add fake 000413EEEE11 server 8\n"), err
    assert err == ("Event 1 accepted: add fake 000413EEEE11 server 8; waiting for it to "
                   "finish\n")
    assert "000413EEEE11" in daemon.provider.registered
    daemon.provider.script["000413EEEE12"] = [permanent("403: Forbidden")]
    code, out, _ = await daemon.run("send", "add", "000413EEEE12", "--provider", "fake",
                                    "--wait", "--json")
    assert code == 1
    assert (json.loads(out)["state"], json.loads(out)["last_error"]) == (
        "failed", "403: Forbidden")
    code, _, err = await daemon.run("send", "add", "--csv", "x.csv", "--wait")
    assert (code, err) == (2, "rps-service send: --wait is for a single event, not --csv\n")


async def test_send_csv_in_batches_with_progress(daemon: Running, tmp_path: Path) -> None:
    csv_file = tmp_path / "phones.csv"
    lines = ["# exported from the GUI", ""]
    lines += [f"0004131{i:05X},{1 + i % 3},D717,Desk {i},{2000 + i}" for i in range(2500)]
    csv_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = await daemon.run("send", "add", "--csv", str(csv_file),
                                      "--provider", "fake")
    assert code == 0, err
    assert err.splitlines() == ["sent 1000/2500", "sent 2000/2500", "sent 2500/2500"]
    assert out == f"Accepted 2500 events from {csv_file} (0 duplicates).\n"
    stored = await all_events(daemon.service)
    assert len(stored) == 2500
    first = min(stored, key=lambda e: e.id)
    assert (first.mac, first.server, first.payload) == (
        "000413100000", 1, {"model": "D717", "name": "Desk 0", "extension": "2000"})
    assert sorted({e.server for e in stored}) == [1, 2, 3]


async def all_events(service: Service) -> list[Any]:
    found: list[Any] = []
    before = None
    while True:
        page = await service.store.list_events(None, 1000, before)
        if not page:
            return found
        found += page
        before = min(e.id for e in page)


async def test_send_csv_with_header_and_bad_lines(daemon: Running, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("MAC,name\n000413FFFF01,Hall\n000413FFFF02,\n", encoding="utf-8")
    code, out, err = await daemon.run("send", "update", "--csv", str(good), "--provider", "fake",
                                      "--server", "5", "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["accepted"] == 2 and {e["server"] for e in body["events"]} == {5}
    ids = [e["id"] for e in body["events"]]
    rows = await wait_events(daemon.client, ids)
    assert [r["payload"] for r in rows] == [{"name": "Hall"}, {}]

    bad = tmp_path / "bad.csv"
    bad.write_text("000413FFFF03\nnot-a-mac\n000413FFFF04,zero\n", encoding="utf-8")
    code, out, err = await daemon.run("send", "add", "--csv", str(bad), "--provider", "fake")
    assert code == 1 and out == ""
    assert err.startswith(f"rps-service send: {bad}: nothing sent: line 2: mac 'not-a-mac': ")
    assert "line 3: server 'zero': must be an integer" in err
    assert [e.mac for e in await daemon.service.store.list_events(None, 10, None)] == [
        "000413FFFF02", "000413FFFF01"]  # only the good file's

    # The daemon's refusal names the CSV line, not the batch index.
    long_name = tmp_path / "long.csv"
    long_name.write_text("000413FFFF05\n000413FFFF06,1,D717," + "x" * 300 + "\n")
    code, _, err = await daemon.run("send", "add", "--csv", str(long_name), "--provider", "fake")
    assert code == 1
    assert "daemon answered 400: invalid event: line 2: name: " in err
    assert "(sent 0/2 before this batch)" in err


async def test_send_serial_number_and_mac_id(daemon: Running, tmp_path: Path) -> None:
    """Phones whose vendor needs ``sn`` (Yealink YMCS, Grandstream) or ``mac_id`` (Gigaset)
    can be added one by one and from a CSV file."""
    code, out, err = await daemon.run("send", "add", "000413EEEE02", "--provider", "fake",
                                      "--sn", "801234567890", "--mac-id", "ABCD-EFGH-1234")
    assert code == 0, err
    [row] = await wait_events(daemon.client, [int(out.split()[1])])
    assert row["payload"] == {"sn": "801234567890", "mac_id": "ABCD-EFGH-1234"}
    csv_file = tmp_path / "serials.csv"
    csv_file.write_text("mac,sn,mac_id,name\n000413EEEE03,SN-3,,Hall\n"
                        "000413EEEE04,SN-4,MACID-4,\n", encoding="utf-8")
    code, out, err = await daemon.run("send", "add", "--csv", str(csv_file), "--provider",
                                      "fake", "--mac-id", "DEFAULT-ID", "--json")
    assert code == 0, err
    rows = await wait_events(daemon.client, [e["id"] for e in json.loads(out)["events"]])
    assert [r["payload"] for r in rows] == [
        {"name": "Hall", "sn": "SN-3", "mac_id": "DEFAULT-ID"},
        {"sn": "SN-4", "mac_id": "MACID-4"}]
    # Without a header, the columns are mac,server,model,name,extension,sn,mac_id.
    plain = tmp_path / "plain.csv"
    plain.write_text("000413EEEE05,2,D717,Desk,100,SN-5,MACID-5\n", encoding="utf-8")
    code, out, err = await daemon.run("send", "add", "--csv", str(plain), "--provider", "fake",
                                      "--json")
    assert code == 0, err
    [row] = await wait_events(daemon.client, [json.loads(out)["events"][0]["id"]])
    assert (row["server"], row["payload"]) == (2, {
        "model": "D717", "name": "Desk", "extension": "100", "sn": "SN-5",
        "mac_id": "MACID-5"})


async def test_test_provider(daemon: Running) -> None:
    code, out, _ = await daemon.run("test", "fake", "--server", "8")
    assert (code, out) == (0, "OK: fake provider accepts server 8\n")
    code, out, _ = await daemon.run("test", "refusing", "--server", "3")
    assert (code, out) == (1, "FAILED: SRAPS rejected the key for server 3\n")
    code, out, _ = await daemon.run("test", "refusing", "--json")
    assert code == 1
    assert json.loads(out) == {"ok": False, "message": "SRAPS rejected the key for server 1"}
    code, _, err = await daemon.run("test", "nope")
    assert code == 1 and "daemon answered 404: unknown provider 'nope'" in err


async def test_unreachable_daemon_and_wrong_token(daemon: Running, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await daemon.run("events", "--url", url)
    assert code == 1 and out == ""
    assert err.startswith(f"rps-service events: cannot reach the daemon at {url}: ")
    assert err.count("\n") == 1

    wrong = write_ini(tmp_path / "wrong.ini", {"port": daemon.service.address.split(":")[1],
                                               "api_token": "not-the-token"})
    code, _, err = await asyncio.to_thread(_run_with, daemon, ["-c", str(wrong), "devices"])
    assert code == 1
    assert "daemon answered 401: missing or wrong API token (the token is api_token" in err

    # --url with no rps.ini at hand: the token comes from the environment.
    monkeypatch.setenv("RPS_GENERAL_API_TOKEN", TOKEN)
    code, out, err = await asyncio.to_thread(
        _run_with, daemon, ["-c", str(tmp_path / "absent.ini"), "events",
                            "--url", f"http://{daemon.service.address}"])
    assert (code, out, err) == (0, "No events.\n", "")
    code, _, err = await asyncio.to_thread(
        _run_with, daemon, ["-c", str(tmp_path / "absent.ini"), "events"])
    assert code == 2 and "configuration error" in err and "file not found" in err


def _run_with(daemon: Running, argv: list[str]) -> tuple[int, str, str]:
    daemon.capsys.readouterr()
    code = main(argv)
    out, err = daemon.capsys.readouterr()
    return code, out, err


HOSTILE = "403: \x1b[2J\x1b]0;owned\x07\u202eevil"
SHOWN = "403: \\x1b[2J\\x1b]0;owned\\x07\\u202eevil"


def _raw_controls(text: str) -> list[str]:
    return [c for c in text if c not in "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F
                                                  or c in "\u202e\u2066")]


async def test_text_from_outside_is_shown_escaped(daemon: Running, tmp_path: Path) -> None:
    """Issue 20, finding 6: ESC and U+202E from a vendor's error, and a device name stored
    before names were checked, reach neither rps.log nor the terminal raw."""
    daemon.provider.script["000413000009"] = [permanent(HOSTILE)]
    await daemon.post(event("000413000009"))
    # A name with a control can no longer come in through the API (below); a row written
    # before that (or by another tool) is still shown escaped.
    store = daemon.service.store
    [row] = await store.insert_events(
        [NewEvent("add", "fake", 8, "000413000010", {"name": "\x1b[2JRecep\u202etion"})],
        utcnow())
    daemon.service.distributor.wake()
    await wait_events(daemon.client, [row.id])
    for command in (("events",), ("devices",)):
        code, out, err = await daemon.run(*command)
        assert code == 0, err
        assert not _raw_controls(out), out
        assert SHOWN in out
    _, out, _ = await daemon.run("devices", "--mac", "000413000010")
    assert "\\x1b[2JRecep\\u202etion" in out
    code, out, _ = await daemon.run("devices", "--json")
    assert code == 0 and not _raw_controls(out)
    names = {d["mac"]: d["name"] for d in json.loads(out)["devices"]}
    assert names["000413000010"] == "\x1b[2JRecep\u202etion"  # scripts read the real text
    log = (tmp_path / "rps.log").read_text()
    assert not _raw_controls(log)
    assert f"ERROR (QUEUE): Error while handling Event. Action=add Err={SHOWN} " in log

    # The event API refuses such a name, naming the field; the command says so, escaped.
    r = await daemon.client.post("/events", json=event("000413000011", name="\u001b[2J"))
    assert r.status_code == 400
    assert r.json()["details"] == [{"index": 0, "field": "name", "message": (
        "must not contain control or bidi characters (found U+001B)")}]
    code, out, err = await daemon.run("send", "add", "000413000011", "--provider", "fake",
                                      "--name", "\x1b[2J")
    assert code == 1 and out == "" and not _raw_controls(err)
    assert "name: must not contain control or bidi characters (found U+001B)" in err
