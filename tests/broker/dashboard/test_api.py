"""The JSON API over a real SQLite store and archive: views, timelines, dead letters, guards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import pytest

from broker.settings import BrokerSettings
from contracts import AgentJoined, Event, TaskAssigned, TaskStarted, TaskSubmitted, TaskSucceeded
from tests.support.dead_letters import make_letter
from workers.dashboard.service import Dashboard, DashboardConfig
from workers.dlq.archive import open_archive
from workers.runtime.messages import new_event
from workers.store import EventStore, open_store

pytestmark = pytest.mark.broker

EVIL = '<img src=x onerror="window.__xss=1">'


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EventStore]:
    s = open_store(store_url)
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def record(store: EventStore, stream: str, *events: Event) -> None:
    await store.append(stream, None, [new_event(e) for e in events])


async def a_finished_task(store: EventStore) -> UUID:
    task_id = uuid4()
    await record(
        store,
        "agent-w1",
        AgentJoined(agent_id="w1", capabilities=("crawl",), capacity=3, labels={"zone": EVIL}),
    )
    await record(
        store,
        f"task-{task_id}",
        TaskSubmitted(
            submitted_at=datetime.now(UTC),
            task_id=task_id,
            capability="crawl",
            payload={"html": EVIL},
            ready=True,
        ),
        TaskAssigned(task_id=task_id, agent_id="w1", attempt=1, fencing_token=1, reason="only one"),
    )
    await record(
        store,
        f"task-{task_id}",
        TaskStarted(task_id=task_id, agent_id="w1", attempt=1, deadline=datetime.now(UTC)),
        TaskSucceeded(task_id=task_id, agent_id="w1", attempt=1, result=EVIL),
    )
    return task_id


async def get(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.get(url, **kwargs) as response:
        return response.status, await response.json()


async def test_views_timelines_and_dead_letters_come_from_the_history_and_the_archive(
    dashboard: Dashboard, site: str, store: EventStore, store_url: str, http: aiohttp.ClientSession
) -> None:
    task_id = await a_finished_task(store)
    archive = open_archive(store_url)
    await archive.start()
    letter = make_letter(0, dlq=f"{dashboard.topology.namespace}.q.tasks.dlq", error=EVIL)
    await archive.add([letter])
    await archive.close()

    overview: dict[str, Any] = {}

    async def caught_up() -> bool:
        nonlocal overview
        overview = (await get(http, site + "api/overview"))[1]
        return bool(
            overview["tasks"]["by_state"]["succeeded"] and overview["dead_letters"]["total"]
        )

    await eventually_async(caught_up)
    assert overview["namespace"] == dashboard.topology.namespace
    (agent,) = overview["agents"]["list"]
    assert agent["labels"] == {"zone": EVIL}
    assert (agent["agent_id"], agent["status"], agent["capacity"], agent["load"]) == (
        "w1",
        "live",
        3,
        0,
    )
    assert overview["tasks"]["recent"][0]["task_id"] == str(task_id)
    (reason,) = overview["dead_letters"]["by_reason"]
    assert reason["reason"] == letter.reason
    assert reason["letters"][0]["href"] == f"/api/deadletters/{letter.id}"

    status, task = await get(http, site + f"api/tasks/{task_id}")
    assert status == 200
    assert task["state"] == "succeeded"
    assert [e["type"] for e in task["timeline"]] == [
        "TaskSubmitted",
        "TaskAssigned",
        "TaskStarted",
        "TaskSucceeded",
    ]
    assert task["timeline"][0]["data"]["payload"] == {"html": EVIL}  # as data, untouched

    status, listed = await get(http, site + "api/tasks?state=succeeded&limit=5")
    assert (status, [t["task_id"] for t in listed["tasks"]]) == (200, [str(task_id)])
    status, shown = await get(http, site + reason["letters"][0]["href"].removeprefix("/"))
    assert (status, shown["id"], shown["error"]) == (200, letter.id, EVIL)

    assert (await get(http, site + f"api/tasks/{uuid4()}"))[0] == 404
    assert (await get(http, site + "api/tasks/not-a-task"))[0] == 400
    assert (await get(http, site + "api/tasks?state=sleeping"))[0] == 400
    assert (await get(http, site + "api/deadletters/ffffffffffff"))[0] == 404
    assert (await get(http, site + "api/deadletters/..%2Fetc"))[0] == 400
    status, agents = await get(http, site + "api/agents")
    assert (status, agents["by_status"]) == (200, {"live": 1})


async def test_it_is_read_only_and_answers_only_to_loopback_names(
    site: str, http: aiohttp.ClientSession
) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        async with http.request(method, site + "api/overview") as response:
            assert response.status == 405, method
    async with http.get(site, headers={"Host": "evil.example:8080"}) as response:
        assert response.status == 421
    async with http.get(site.replace("127.0.0.1", "localhost")) as response:
        assert response.status == 200
        page = await response.text()
        assert '<script src="/static/app.js"' in page
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        async with http.get(site + f"static/{name}") as response:
            assert (response.status, response.content_type) == (200, kind)
            assert len(await response.read()) > 1000
    async with http.get(site + "static/..%2f..%2fserver.py") as response:
        assert response.status == 404
    async with http.get(site + "api/overview") as response:
        assert response.headers["Cache-Control"] == "no-store"


async def eventually_async(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)


async def test_stopping_at_once_leaves_nothing_running(
    broker_settings: BrokerSettings, store_url: str
) -> None:
    """Stopped while its first broker connect is in flight: that connect finishes and is
    closed, instead of being cut half-way and left reconnecting in the background.
    (No ``broker`` fixture here: its own connection's tasks would be counted too.)"""
    config = DashboardConfig(store_url=store_url, broker=broker_settings)
    dashboard = await Dashboard(config).start()
    await asyncio.sleep(0)  # the loops are in their first step
    await dashboard.stop()
    await asyncio.sleep(0.5)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert others == []
