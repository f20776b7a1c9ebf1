"""The web console in a real headless browser (Debian's chromium, driven by Playwright)
against a real daemon on MariaDB with the test providers: the token, filters, paging,
Retry, Test, health, jobs, the layout at common window widths, and that device data is shown
as text, never run as markup.

``RPS_SCREENSHOTS=docs/img`` makes the layout test write the screenshots of
docs/console.md (``console-<width>.png``); normal runs write nothing.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; .ci/run installs it). Outside
CI the test is skipped without it; in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from rps_service.config import load_settings
from rps_service.service import Service
from tests.conftest import free_port, write_ini
from tests.console import add_devices, running, wait_for
from tests.fakes import permanent

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]
TOKEN = "tok-123456"
HOSTILE = '<img src=x onerror="document.title=1">Lobby'
FAILING_MAC = "000413000004"  # fake provider, server 2: its add fails once
# Its error: markup, and controls shown escaped (a U+202E must not turn the row around).
FAILURE = "403: Forbidden <b>x</b> \x1b[2J\u202eevil"
FAILURE_SHOWN = "403: Forbidden <b>x</b> \\x1b[2J\\u202eevil"

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI needs /usr/bin/chromium for the console test (apt-get install "
                           "chromium); .ci/run installs it")
    pytest.skip("needs /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    # Debian's chromium only: never a browser download (no `playwright install`).
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def daemon(tmp_path: Path, mysql_database: str) -> AsyncIterator[tuple[Service, str]]:
    """A daemon on MariaDB with a token: 250 devices on servers 1-3 of two providers, one
    of them failed (its event too), one with a hostile name, one arrived through /ztprov/."""
    general = {"port": free_port(), "database": mysql_database, "log_file": "-",
               "api_token": TOKEN, "poll_interval": 0.2, "retry_base": 0.01,
               "retry_cap": 0.05}
    settings = load_settings(write_ini(tmp_path / "rps.ini", general), env={})
    async with running(settings, token=TOKEN) as (service, client):
        service.providers["fake"].script[FAILING_MAC] = [permanent(FAILURE)]
        events = [{"action": "add", "provider": ("fake", "other")[i % 2],
                   "mac": f"0004130{i:05X}", "server": 1 + i % 3, "name": f"Phone {i}",
                   "model": "D717", "extension": str(100 + i)} for i in range(250)]
        events[6]["name"] = HOSTILE
        await add_devices(client, events)
        await service.store.record_ztp_fetch("fake", "000413000000", "D785", "10.1.33.33",
                                             "10.0.0.5", datetime.now(UTC).replace(tzinfo=None))
        yield service, f"http://{service.address}/ui/"


async def _open(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # Errors in the page's console (a script error, a CSP refusal), but not the network
    # log of answers the page expects and handles (401 before the token, a 400's message).
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text else None)
    await page.goto(url)
    return page, problems


async def _enter_token(page: Page, token: str) -> None:
    dialog = page.locator("#token-dialog")
    await expect(dialog).to_be_visible()
    await page.fill("#token-input", token)
    await page.click("#token-form button[type=submit]")


def _range(first: int, last: int, total: int) -> str:
    return f"Devices {first}\N{EN DASH}{last} of {total}"


def _rows(page: Page) -> Any:
    return page.locator("#devices-table tbody tr")


async def test_console_end_to_end(browser: Browser, daemon: tuple[Service, str]) -> None:
    service, url = daemon
    page, problems = await _open(browser, url)

    # The token: asked once, a wrong one asked again, kept across a reload.
    await _enter_token(page, "wrong-token")
    await expect(page.locator("#token-note")).to_contain_text("refused")
    await _enter_token(page, TOKEN)
    await expect(page.locator("#devices-range")).to_have_text(_range(1, 100, 250))
    await expect(_rows(page)).to_have_count(100)
    await page.reload()
    await expect(page.locator("#devices-range")).to_have_text(_range(1, 100, 250))
    await expect(page.locator("#token-dialog")).to_be_hidden()

    # Device data is text: the hostile name shows as typed and runs nothing.
    hostile = page.locator("#devices-table tr[data-mac='000413000006'] td").nth(4)
    await expect(hostile).to_have_text(HOSTILE)
    assert await page.locator("#devices-table img").count() == 0
    assert await page.title() == "rps-service console"

    # Paging: the same rows, in the same order, as the API's own pages.
    await page.click("#devices-next")
    await expect(page.locator("#devices-range")).to_have_text(_range(101, 200, 250))
    api = {"Authorization": f"Bearer {TOKEN}"}
    first = await page.request.get(url.replace("/ui/", "/devices?limit=100"), headers=api)
    second = await page.request.get(url.replace("/ui/", "/devices"), headers=api, params={
        "limit": 100, "after": (await first.json())["next"]})
    macs = [d["mac"] for d in (await second.json())["devices"]]
    assert await page.locator("#devices-table td.mac").all_inner_texts() == macs
    await page.click("#devices-next")
    await expect(page.locator("#devices-range")).to_have_text(_range(201, 250, 250))
    await expect(page.locator("#devices-next")).to_be_disabled()
    await page.click("#devices-prev")
    await expect(page.locator("#devices-range")).to_have_text(_range(101, 200, 250))

    # Filters: server and provider; kept in the address.
    await page.fill("#device-filters input[name=server]", "2")
    await page.select_option("#device-filters select[name=provider]", "other")
    await page.click("#device-filters button[type=submit]")
    await expect(page.locator("#devices-range")).to_have_text(_range(1, 42, 42))
    servers = await page.locator("#devices-table tbody tr td:nth-child(3)").all_inner_texts()
    providers = await page.locator("#devices-table tbody tr td:nth-child(1)").all_inner_texts()
    assert set(servers) == {"2"} and set(providers) == {"other"}
    assert "server=2" in page.url and "provider=other" in page.url
    await page.click("#device-filters button[type=reset]")
    await expect(page.locator("#devices-range")).to_have_text(_range(1, 100, 250))

    # Status and MAC: the failed device; the device that fetched its /ztprov/ file.
    await page.select_option("#device-filters select[name=status]", "error")
    await page.click("#device-filters button[type=submit]")
    await expect(page.locator("#devices-range")).to_have_text(_range(1, 1, 1))
    await expect(_rows(page).first).to_contain_text(FAILURE_SHOWN)
    message = _rows(page).first.locator("td.message")
    assert await message.get_attribute("title") == FAILURE_SHOWN
    await page.click("#device-filters button[type=reset]")
    await page.fill("#device-filters input[name=mac]", "00:04:13:00:00:00")
    await page.click("#device-filters button[type=submit]")
    await expect(page.locator("#devices-range")).to_have_text(_range(1, 1, 1))
    await expect(_rows(page).first.locator("td").last).to_contain_text("D785 · 10.1.33.33")
    await page.fill("#device-filters input[name=mac]", "nonsense")
    await page.click("#device-filters button[type=submit]")
    await expect(page.locator("#devices-error")).to_contain_text("mac: must be 12 hex digits")

    # The failed event: Retry, then the console follows it to done.
    failed = page.locator("#failed-table tbody tr")
    await expect(failed).to_have_count(1)
    await expect(failed.first).to_contain_text(FAILING_MAC)
    await expect(failed.first).to_contain_text(FAILURE_SHOWN)
    await expect(failed.first.locator("td.state")).to_have_text("failed")
    await failed.first.locator("button").click()
    await expect(failed.first.locator("td.state")).to_have_text(re.compile("pending|running|done"))
    await expect(failed.first.locator("td.state")).to_have_text("done")
    await expect(failed.first.locator("button")).to_be_disabled()
    device = await service.store.get_device("fake", FAILING_MAC)
    assert device is not None and device.status == "registered"

    # A provider's Test, for the server typed in.
    other = page.locator("#providers-table tbody[data-provider=other]")
    await other.locator("input.server").fill("8")
    await other.locator("button", has_text="Test").click()
    await expect(other.locator(".result")).to_have_text("OK: fake provider accepts server 8")

    # Backlog and queues; the jobs panel (this daemon has /jobs).
    await expect(page.locator("#backlog-pending")).to_have_text("0")
    await expect(page.locator("#queues tbody tr")).to_have_count(4)
    await expect(page.locator("#health-summary")).to_have_text(
        "0 pending, 0 running, 0 waiting for the vendor")
    await expect(page.locator("#backlog-waiting")).to_have_text("0")
    await expect(page.locator("#lanes")).to_be_visible()  # the daemon reports its lanes
    await expect(page.locator("#jobs")).to_be_visible()
    assert problems == [], problems


async def test_jobs_panel_follows_a_reconcile(
    browser: Browser, daemon: tuple[Service, str],
) -> None:
    """A reconcile started from a provider's row is followed to its end: its phase, its
    progress and what it found (the test provider looks devices up one by one)."""
    service, url = daemon
    service.providers["other"].registered.pop("000413000001")  # gone at the vendor
    page = await browser.new_page()
    await page.goto(url)
    await _enter_token(page, TOKEN)
    await expect(page.locator("#jobs")).to_be_visible()
    other = page.locator("#providers-table tbody[data-provider=other]")
    await other.locator("input.server").fill("2")
    await other.locator("button", has_text="Reconcile").click()
    job = page.locator("#job-list li").first
    await expect(job).to_contain_text("done", timeout=20_000)
    await expect(job).to_contain_text("reconcile other server 2")
    await expect(job).to_contain_text("missing 1, drift 0, orphan 0")
    total = await job.locator(".job-progress").text_content()
    assert total is not None and total.endswith(" / 42"), total


WIDTHS = (1280, 1440, 1920)
#: Every visible button: inside the window and inside every box that clips it (a table's
#: scroll area), so none sits off-screen; no panel over another; and the page itself never
#: scrolls sideways.
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width) {
    problems.push(`page ${document.documentElement.scrollWidth}px wide in ${width}px`);
  }
  const sections = [...document.querySelectorAll('main section')]
    .filter((el) => !el.hidden).map((el) => [el.id, el.getBoundingClientRect()]);
  for (const [i, [name, a]] of sections.entries()) {
    for (const [other, b] of sections.slice(i + 1)) {
      if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1
          && b.top < a.bottom - 1) problems.push(`${name} overlaps ${other}`);
    }
  }
  for (const button of document.querySelectorAll('button')) {
    const box = button.getBoundingClientRect();
    if (!box.width || button.closest('dialog, [hidden]')) continue;
    const name = `${button.textContent.trim()} (${button.closest('section')?.id})`;
    if (box.left < 0 || box.right > width) problems.push(`${name} outside the window`);
    for (let el = button.parentElement; el; el = el.parentElement) {
      if (getComputedStyle(el).overflowX === 'visible') continue;
      const clip = el.getBoundingClientRect();
      if (box.left < clip.left - 1 || box.right > clip.right + 1) {
        problems.push(`${name} clipped by ${el.tagName}.${el.className}`);
      }
    }
  }
  return problems;
}"""


def _gap(page: Page) -> Any:
    return page.evaluate("""() => {
      const devices = document.getElementById('devices').getBoundingClientRect();
      return document.getElementById('failed').getBoundingClientRect().top - devices.bottom;
    }""")


async def test_layout_at_common_widths(browser: Browser, daemon: tuple[Service, str]) -> None:
    """At 1280, 1440 and 1920 px the page does not scroll sideways and every button (Test,
    Reconcile, Retry, the pagers) is on screen; a short device list leaves no gap above the
    failed events. The side panel's figures stay inside it with vendor accounts listed."""
    _, url = daemon
    api = {"Authorization": f"Bearer {TOKEN}"}
    shots = os.environ.get("RPS_SCREENSHOTS")
    page = await browser.new_page(viewport={"width": WIDTHS[0], "height": 1000})
    await page.goto(url)
    await _enter_token(page, TOKEN)
    for provider in ("fake", "other"):  # jobs in the panel, as an operator has them
        r = await page.request.post(url.replace("/ui/", f"/providers/{provider}/reconcile"),
                                    headers=api, data={"server": 1})
        assert r.status == 202, await r.text()
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 1000})
        await page.goto(url)
        await expect(page.locator("#devices-range")).to_have_text(_range(1, 100, 250))
        await expect(page.locator("#job-list li.ok")).to_have_count(2, timeout=20_000)
        await expect(page.locator("#failed-table tbody tr")).to_have_count(1)
        await expect(page.locator("#providers-table button", has_text="Reconcile")
                     ).to_have_count(2)
        assert await page.evaluate(LAYOUT_PROBLEMS) == [], width
        if shots:
            folder = Path(shots)
            folder.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(folder / f"console-{width}.png"))
    # A short list: the failed events follow it at once, whatever the side panel's height.
    await page.goto(url + "#mac=000413000000")
    await expect(page.locator("#devices-range")).to_have_text(_range(1, 1, 1))
    assert await _gap(page) < 30
    # The vendor accounts' table (a daemon that reports lanes) fits too.
    await page.route("**/health", lambda route: route.fulfill(json=LANES_HEALTH))
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 1000})
        await page.goto(url)
        await expect(page.locator("#lanes tbody tr")).to_have_count(2)
        assert await page.evaluate(LAYOUT_PROBLEMS) == [], width


LANES_HEALTH = {
    "status": "ok", "database": "ok", "queues": [3, 0, 1, 0],
    "backlog": {"pending": 12, "running": 2, "waiting": 179},
    "lanes": [
        {"provider": "snom", "account": "snom|KEYID-0123456789abcdef", "backlog": 181,
         "in_flight": 2, "rate_limit": 5, "paused_until": "2026-11-26T10:21:09Z"},
        {"provider": "yealink", "account": "yealink|ymcs-demo-id", "backlog": 12,
         "in_flight": 0, "rate_limit": 5, "paused_until": None},
    ],
}


async def test_health_shows_waiting_apart_from_running_and_the_lanes(
    browser: Browser, daemon: tuple[Service, str],
) -> None:
    """Events held by their vendor account's rate are waiting, not running: the header and
    the panel say so (a daemon reporting ``backlog.waiting`` and ``lanes``)."""
    _, url = daemon
    page = await browser.new_page()
    await page.route("**/health", lambda route: route.fulfill(json=LANES_HEALTH))
    await page.goto(url)
    await _enter_token(page, TOKEN)
    await expect(page.locator("#health-summary")).to_have_text(
        "12 pending, 2 running, 179 waiting for the vendor")
    await expect(page.locator("#backlog-running")).to_have_text("2")
    await expect(page.locator("#backlog-waiting")).to_have_text("179")
    rows = page.locator("#lanes tbody tr")
    await expect(rows).to_have_count(2)
    assert [c.strip() for c in await rows.first.locator("td").all_inner_texts()] == [
        "snom", "snom|KEYID-0123456789abcdef", "181", "2", "5/s", "2026-11-26 10:21:09"]
    assert [c.strip() for c in await rows.nth(1).locator("td").all_inner_texts()] == [
        "yealink", "yealink|ymcs-demo-id", "12", "0", "5/s", "—"]


async def test_a_retry_refused_for_good_leaves_no_button(
    browser: Browser, daemon: tuple[Service, str],
) -> None:
    """Retry of an event a newer one of its device overtook: 409, the reason shown, and
    no Retry button left to press again."""
    service, url = daemon
    api = {"Authorization": f"Bearer {TOKEN}"}
    page = await browser.new_page()
    await page.goto(url)
    await _enter_token(page, TOKEN)
    row = page.locator(f"#failed-table tbody tr:has(td.mac:text-is('{FAILING_MAC}'))")
    await expect(row.locator("td.state")).to_have_text("failed")
    # The device is removed meanwhile: retrying the failed add would undo that.
    r = await page.request.post(url.replace("/ui/", "/events"), headers=api, data={
        "action": "remove", "provider": "fake", "mac": FAILING_MAC})
    assert r.status == 202
    removed = (await r.json())["events"][0]["id"]

    async def finished() -> bool:
        event = await service.store.get_event(removed)
        return event is not None and event.state == "done"

    await wait_for(finished)
    await row.locator("button", has_text="Retry").click()
    await expect(row.locator("td.message")).to_contain_text(
        "of this device was accepted since")
    await expect(row.locator("button")).to_have_count(0)
    await expect(row).to_contain_text("not retried")
    await expect(row.locator("td.state")).to_have_text("failed")


async def test_jobs_panel_lists_jobs_and_follows_a_repoint_until_sent(
    browser: Browser, daemon: tuple[Service, str],
) -> None:
    """No job number to type: the panel lists the newest jobs (Refresh shows one started
    elsewhere). A re-point is shown as sending until its queued updates are sent, then
    done with every event counted."""
    service, url = daemon
    page = await browser.new_page()
    await page.goto(url)
    await _enter_token(page, TOKEN)
    await expect(page.locator("#jobs")).to_be_visible()
    assert await page.locator("#jobs input").count() == 0
    gate = service.providers["fake"].gate = asyncio.Event()  # the vendor holds every call
    api = {"Authorization": f"Bearer {TOKEN}"}
    r = await page.request.post(url.replace("/ui/", "/servers/3/repoint"), headers=api,
                                data={"provider": "fake"})
    job_id = (await r.json())["job"]
    await page.click("#jobs-refresh")
    job = page.locator(f"#job-list li[data-job='{job_id}']")
    await expect(job).to_contain_text(f"Job {job_id} repoint fake server 3")
    await expect(job.locator(".status")).to_have_text("sending", timeout=20_000)
    await expect(job).to_contain_text("sending events")
    await expect(job.locator(".job-progress")).to_have_text("0 / 42")
    gate.set()
    await expect(job.locator(".status")).to_have_text("done", timeout=20_000)
    await expect(job.locator(".job-progress")).to_have_text("42 / 42")
    await expect(job).to_contain_text("events: done 42")


async def test_a_device_row_opens_its_timeline(
    browser: Browser, daemon: tuple[Service, str],
) -> None:
    """The MAC of a device row opens its timeline: the event accepted, then how it failed
    (shown as text, controls escaped); Close hides it."""
    _, url = daemon
    page, problems = await _open(browser, url)
    await _enter_token(page, TOKEN)
    await page.click(f"#devices-table tr[data-mac='{FAILING_MAC}'] td.mac button")
    dialog = page.locator("#timeline-dialog")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#timeline-title")).to_have_text(f"Timeline of fake {FAILING_MAC}")
    rows = page.locator("#timeline-table tbody tr")
    await expect(rows.first).to_contain_text("accepted")
    await expect(rows.last).to_contain_text(FAILURE_SHOWN)
    await expect(rows.last).to_contain_text("failed")
    assert await page.locator("#timeline-table b").count() == 0
    await page.click("#timeline-close")
    await expect(dialog).to_be_hidden()
    assert problems == [], problems
