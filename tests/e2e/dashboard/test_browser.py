"""The page in a real headless Chromium, over a running fleet: it shows, updates, links and escapes.

A small demo runs in this process — the three workers, two SDK agents, a few tasks,
one task whose error is HTML, and a malformed message that ends as a dead letter —
against a temp SQLite store and the test's own namespace; the dashboard serves it
on a free port. Chromium is Debian's (/usr/bin/chromium), driven by playwright;
no browser is downloaded.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from broker.connection import BrokerConnection
from sdk import Client
from tests.support.amqp import depth, publish_bytes
from workers.dlq.archive import open_archive
from workers.dlq.mover import DeadLetterMover
from workers.runtime.services import Running

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EVIL = '<img src=x onerror="window.__xss=1">'
WAIT_MS = 20_000


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` runs the browser tests")
    playwright = pytest.importorskip("playwright.async_api")
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def wait_until(check: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)


async def a_dead_letter(broker: BrokerConnection, store_url: str) -> None:
    """A malformed submit: the tasks worker dead-letters it; then it is archived, as
    `rally dlq list` does before listing (the dashboard itself only reads the archive)."""
    await publish_bytes(
        broker, broker.topology.commands, "tasks.SubmitTask", b"{not json", message_id="bad-1"
    )
    dlq = broker.topology.worker_queue("tasks") + ".dlq"

    async def arrived() -> bool:
        return await depth(broker, dlq) > 0

    await wait_until(arrived)
    archive = open_archive(store_url)
    await archive.start()
    try:
        assert await DeadLetterMover(broker, archive).drain() == 1
    finally:
        await archive.close()


def assert_png(path: Path) -> None:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(raw) > 30_000, f"{len(raw)} bytes: too small for a page with tables and a chart"
    try:
        from PIL import Image
    except ImportError:  # the size says enough where Pillow is not installed
        return
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 16, "the screenshot is (nearly) blank"
    # one band: (darkest, lightest)
    low, high = cast(tuple[int, int], image.convert("L").getextrema())
    assert high - low > 100, "no contrast: text did not render"


async def test_the_page_shows_a_running_fleet_updates_live_and_escapes_what_it_shows(
    browser: Any,  # first: without Chromium, skip before starting a fleet
    fleet: Running,
    agents: Callable[..., Any],
    client: Client,
    broker: BrokerConnection,
    store_url: str,
    site: str,
    tmp_path: Path,
) -> None:
    await agents("dash-alpha")
    await agents("dash-beta")
    handles = [await client.submit("echo", {"n": n}) for n in range(6)]
    evil = await client.submit("explode", {"message": EVIL}, max_attempts=1)
    for handle in handles:
        await handle.result(timeout=30)
    assert (await evil.outcome(timeout=30)).state == "dead"
    await a_dead_letter(broker, store_url)

    page = await browser.new_page(viewport={"width": 1500, "height": 1100})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    await page.goto(site)
    await page.evaluate("window.__loadedOnce = true")

    # agents from the demo, with their heartbeats heard
    for agent_id in ("dash-alpha", "dash-beta"):
        row = page.locator(f'#agents tr[data-agent-id="{agent_id}"]')
        await row.wait_for(timeout=WAIT_MS)
        assert (await row.locator("td.status").text_content()) == "live"
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#agents tbody tr')]"
        ".every(r => / s ago/.test(r.textContent))",
        timeout=WAIT_MS,
    )

    # tasks by state, and the throughput chart drew something above its baseline
    await page.wait_for_function(
        "() => Number(document.querySelector("
        "'#task-counts [data-state=succeeded] .count')?.textContent) >= 6",
        timeout=WAIT_MS,
    )
    dead_count = page.locator("#task-counts [data-state=dead] .count")
    assert (await dead_count.text_content()) == "1"
    drawn = await page.evaluate(
        "() => document.querySelector('#throughput-chart polyline').getAttribute('points')"
        ".split(' ').some(p => Number(p.split(',')[1]) < 100)"
    )
    assert drawn, "the chart shows no finished task"

    # queues with depth and consumers
    tasks_queue = page.locator(f'#queues tr[data-queue="{broker.topology.worker_queue("tasks")}"]')
    await tasks_queue.wait_for(timeout=WAIT_MS)
    assert int(await tasks_queue.locator("td").nth(3).text_content() or 0) >= 1

    # updates without a reload: a task submitted now appears, and finishes, on the same page
    late = await client.submit("echo", {"late": True})
    await late.result(timeout=30)
    late_row = page.locator(f'#tasks tr[data-task-id="{late.task_id}"][data-state="succeeded"]')
    await late_row.wait_for(timeout=WAIT_MS)
    assert await page.evaluate("window.__loadedOnce") is True

    # click a task: its timeline in the panel
    await late_row.click()
    await page.locator('#timeline li[data-type="TaskSucceeded"]').wait_for(timeout=WAIT_MS)
    types = await page.locator("#timeline li").evaluate_all(
        "items => items.map(li => li.dataset.type)"
    )
    assert types[0] == "TaskSubmitted"
    assert {"TaskAssigned", "TaskStarted", "TaskSucceeded"} <= set(types)
    assert str(late.task_id) in (await page.locator("#panel-title").text_content() or "")

    # what agents send is shown as text: the HTML error is visible, never run
    await page.locator(f'#tasks tr[data-task-id="{evil.task_id}"]').click()
    await page.locator('#timeline li[data-type="TaskDead"]').wait_for(timeout=WAIT_MS)
    assert EVIL in (await page.locator("#timeline").text_content() or "")
    assert EVIL in (
        await page.locator(f'#tasks tr[data-task-id="{evil.task_id}"]').text_content() or ""
    )
    assert await page.locator("img").count() == 0
    assert await page.evaluate("window.__xss") is None

    # dead letters by reason, each linked to its record
    link = page.locator("#deadletters [data-reason] a[data-letter-id]").first
    await link.wait_for(timeout=WAIT_MS)
    letter_id = await link.get_attribute("data-letter-id")
    href = await link.get_attribute("href")
    assert href == f"/api/deadletters/{letter_id}"
    response = await page.request.get(site + href.removeprefix("/"))
    letter = await response.json()
    assert (response.status, letter["id"], letter["queue"]) == (
        200,
        letter_id,
        broker.topology.worker_queue("tasks"),
    )
    await link.click()
    await page.wait_for_function(
        "id => document.querySelector('#panel-json').textContent.includes(id)",
        arg=letter_id,
        timeout=WAIT_MS,
    )

    # back to the task's timeline for the picture, then a screenshot worth looking at
    await late_row.click()
    await page.locator('#timeline li[data-type="TaskSucceeded"]').wait_for(timeout=WAIT_MS)
    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert_png(shot)
    assert problems == []
