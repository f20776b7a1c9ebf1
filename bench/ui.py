"""6. The web console: first paint of the first page of 100,000 devices (``--quick``: 10,000).

The devices are written straight into a fresh database (schema by ``rps-service init-db``,
as installed), then the daemon is started and headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright; never a downloaded browser) opens ``/ui/``,
each time in a fresh browser context (empty cache), like an operator opening the console:

* nav start → rows painted: from the navigation's start to the paint of the first page's
  first row, as Chromium's Element Timing records it (the console marks that cell with
  ``elementtiming``; its own ``rps:devices-painted`` mark, set in a task queued from the
  next animation frame, is the fallback). Target ≤ 300 ms (docs/performance.md, "The web console").
* nav start → rows in the DOM (``rps:devices-rendered``), and the first page's
  ``GET /devices`` and the total's ``count=true`` as the browser timed them.
* the first load after the daemon started is reported on its own (cold caches); the
  figures with a target are the median of the loads after it.
* a deep page, ``after`` the 90 %-th device, fetched directly: keyset paging costs the
  same anywhere in the list.

Baseline: the same page (the console's DOM showing the first page, scripts removed) as
static HTML from a bare aiohttp server, measured the same way (its first row's Element
Timing): what Chromium itself needs for this table on this machine.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import (
    Daemon,
    Database,
    Options,
    Row,
    database,
    for_each_db,
    http_session,
    init_db,
    running,
    settle_mysql,
    workdir,
)

BENCH = "ui"
TARGET_MS = 300.0
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]
TENANTS = 50
MEASURE_JS = """() => new Promise((resolve) => {
  const mark = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
  const api = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/devices?'));
  const page = api.find((e) => !e.name.includes('count='));
  const count = api.find((e) => e.name.includes('count='));
  const figures = (painted) => ({
    painted, mark: mark('rps:devices-painted'), rendered: mark('rps:devices-rendered'),
    page: page ? page.responseEnd - page.startTime : null,
    count: count ? count.responseEnd - count.startTime : null,
    rows: document.querySelectorAll('#devices-table tbody tr').length});
  // Element Timing: when the first row's text was painted (Chromium records it for the
  // element the console marks with elementtiming); else the console's own mark.
  new PerformanceObserver((list) => {
    const hit = list.getEntries().find((e) => e.identifier === 'devices-first-row');
    if (hit) resolve(figures(hit.renderTime || hit.startTime));
  }).observe({type: 'element', buffered: true});
  setTimeout(() => resolve(figures(mark('rps:devices-painted'))), 2000);
})"""



def _missing() -> str | None:
    """What the benchmark lacks on this machine, if anything."""
    try:
        import playwright.async_api  # noqa: F401 - only to say why the rows are missing
    except ImportError:
        return "needs the playwright package (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return "needs /usr/bin/chromium (apt-get install chromium)"
    return None

# The snapshot keeps the first row's elementtiming attribute: the same measure.
STATIC_JS = """() => new Promise((resolve) => {
  new PerformanceObserver((list) => {
    const hit = list.getEntries().find((e) => e.identifier === 'devices-first-row');
    if (hit) resolve(hit.renderTime || hit.startTime);
  }).observe({type: 'element', buffered: true});
  setTimeout(() => resolve(performance.getEntriesByName('first-contentful-paint')[0]
    ?.startTime ?? NaN), 2000);
})"""


async def run(opts: Options) -> list[Row]:
    if missing := _missing():
        return [Row(BENCH, "-", missing, None, status="SKIP")]

    async def measure(kind: str) -> list[Row]:
        return await _ui(kind, opts)

    return await for_each_db(BENCH, opts, measure)


def _devices(count: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    rows = []
    for i in range(count):
        server = 1 + i % TENANTS
        failed = i % 97 == 0
        rows.append((
            "snom", f"{0x000413000000 + i:012X}", server, "error" if failed else "registered",
            "403: Forbidden" if failed else "-", "D717", f"Phone {i}", str(1000 + i % 9000),
            None if failed else now, f"https://pbx.example.com/ztprov/{server}/", now,
            now if i % 10 == 0 else None, "D717" if i % 10 == 0 else None,
        ))
    return rows


def _seed(db: Database, count: int) -> float:
    """Write ``count`` device rows in one go; seconds it took."""
    began = time.monotonic()
    columns = ("provider, mac, server, status, last_message, model, name, extension, "
               "registered_at, url, updated_at, ztp_fetched_at, ztp_model")
    rows = _devices(count)
    if db.path is not None:
        import sqlite3

        conn = sqlite3.connect(db.path)
        try:
            with conn:
                conn.executemany(f"INSERT INTO rps_devices ({columns}) VALUES "
                                 f"({', '.join('?' * 13)})", rows)
        finally:
            conn.close()
    else:
        import pymysql

        from bench.common import MYSQL

        mconn = pymysql.connect(database=db.name, **MYSQL)
        try:
            with mconn.cursor() as cur:
                for start in range(0, count, 5000):  # multi-row INSERTs (pymysql batches)
                    cur.executemany(f"INSERT INTO rps_devices ({columns}) VALUES "
                                    f"({', '.join(['%s'] * 13)})", rows[start:start + 5000])
            mconn.commit()
        finally:
            mconn.close()
    return time.monotonic() - began


async def _ui(kind: str, opts: Options) -> list[Row]:
    from playwright.async_api import async_playwright

    count = 10_000 if opts.quick else 100_000
    loads = 3 if opts.quick else 11  # the first is reported apart (cold)
    with workdir(opts, f"ui-{kind}") as folder, database(kind, folder, opts) as db:
        daemon = Daemon(folder, db.dsn, opts, general={"log_level": "WARNING"})
        await init_db(daemon)
        seeded = await asyncio.to_thread(_seed, db, count)
        opts.note(f"ui {kind}: {count:,} devices written in {seeded:.1f} s")
        if kind == "mysql" and not opts.quick:
            # A bulk load leaves InnoDB flushing and merging index pages for a while; a
            # daemon meets a table that grew over months, so measure after that settled.
            await asyncio.to_thread(db.rows, "ANALYZE TABLE rps_devices")
            await asyncio.to_thread(settle_mysql)
        async with http_session() as session:
            daemon.start()
            async with running(daemon):
                await daemon.ready(session)
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=str(CHROMIUM), args=FLAGS)
                    try:
                        runs = [await _load(browser, f"{daemon.url}/ui/", count)
                                for _ in range(loads)]
                        static = await _static_baseline(browser, session, daemon.url,
                                                        loads - 1)
                    finally:
                        await browser.close()
                deep = await _deep_page(session, daemon.url, count)
    return _rows(kind, count, runs, static, deep, opts)


async def _load(browser: Any, url: str, count: int) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        await page.goto(url)
        await page.wait_for_function(
            "() => performance.getEntriesByName('rps:devices-painted').length > 0",
            timeout=30_000)
        # The total comes on a request of its own, after the rows: wait for its answer.
        await page.wait_for_function(
            "() => /of [0-9,]+$/.test(document.getElementById('devices-range').textContent)",
            timeout=30_000)
        figures: dict[str, float] = await page.evaluate(MEASURE_JS)
        shown = await page.text_content("#devices-range")
        if figures["rows"] != 100 or not shown or not shown.endswith(f"of {count:,}"):
            raise RuntimeError(f"the console showed {figures['rows']} rows, {shown!r}")
        return figures
    finally:
        await context.close()


async def _static_baseline(browser: Any, session: Any, url: str, loads: int) -> float:
    """Median time to the first row painted of the same page as plain HTML: the console's
    DOM once it shows the first page, scripts taken out, served with its stylesheet by a
    bare aiohttp server. What Chromium itself needs for this table on this machine."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        await page.goto(f"{url}/ui/")
        await page.wait_for_function(
            "() => performance.getEntriesByName('rps:devices-painted').length > 0")
        html = await page.content()
    finally:
        await context.close()
    html = re.sub(r"<script\b[^>]*>.*?</script>|<link rel=\"modulepreload\"[^>]*>", "", html,
                  flags=re.S)
    async with session.get(f"{url}/ui/style.css") as r:
        css = await r.read()
    app = web.Application()
    app.router.add_get("/", lambda _: _answer(html.encode(), "text/html; charset=utf-8"))
    app.router.add_get("/style.css", lambda _: _answer(css, "text/css"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    paints: list[float] = []
    try:
        for _ in range(loads):
            context = await browser.new_context(viewport={"width": 1400, "height": 1000})
            try:
                page = await context.new_page()
                await page.goto(f"http://127.0.0.1:{port}/")
                paints.append(float(await page.evaluate(STATIC_JS)))
            finally:
                await context.close()
    finally:
        await runner.cleanup()
    return statistics.median(paints)


async def _answer(body: bytes, content_type: str) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _deep_page(session: Any, url: str, count: int) -> float:
    """Median ms of GET /devices for the page after the 90 %-th device (20 requests)."""
    position = int(count * 0.9)
    async with session.get(f"{url}/devices", params={"limit": position}) as r:
        last = (await r.json())["devices"][-1]
    after = f"{last['server']}:{last['provider']}:{last['mac']}"
    times = []
    for _ in range(20):
        began = time.monotonic()
        async with session.get(f"{url}/devices", params={"limit": 100, "after": after}) as r:
            body = await r.json()
        times.append((time.monotonic() - began) * 1000)
        if len(body["devices"]) != 100:
            raise RuntimeError(f"deep page: {len(body['devices'])} devices")
    return statistics.median(times)


def _rows(kind: str, count: int, runs: list[dict[str, float]], static: float, deep: float,
          opts: Options) -> list[Row]:
    cold, warm = runs[0], runs[1:]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in warm)

    painted = median("painted")
    opts.note(f"ui {kind}: nav start → rows painted, ms, each load: "
              + " ".join(f"{r['painted']:.0f}" for r in runs) + " (the first cold)")
    label = f"{count:,} devices"
    return [
        Row(BENCH, kind, f"first page of {label}: nav start → rows painted, median of "
            f"{len(warm)}", painted, "ms", baseline=static, ratio=painted / static,
            target=f"≤ {TARGET_MS:g} ms", ok=painted <= TARGET_MS),
        Row(BENCH, kind, "  baseline: the same page as static HTML, nav start → row painted",
            static, "ms"),
        Row(BENCH, kind, "  the same, first load after the daemon started (cold)",
            cold["painted"], "ms"),
        Row(BENCH, kind, "  nav start → rows in the DOM, median", median("rendered"), "ms"),
        Row(BENCH, kind, "  GET /devices, page of 100, in the browser, median", median("page"),
            "ms"),
        Row(BENCH, kind, f"  GET /devices?count=true (total of {label}), median",
            median("count"), "ms"),
        Row(BENCH, kind, "GET /devices, page after the 90 %-th device (keyset), median of 20",
            deep, "ms"),
    ]
