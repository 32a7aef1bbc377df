"""A task whose history retention archived still answers QueryTask: its final state, expired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from broker.connection import BrokerConnection
from broker.settings import BrokerSettings
from sdk import Client, Task
from tests.broker.sdk.conftest import MakeAgent
from workers.readmodels import database_for
from workers.readmodels.task_queries import tasks_runner
from workers.runtime.services import Running, run_services
from workers.runtime.settings import WorkerSettings
from workers.store.base import EventStore
from workers.tasks.state import stream_of

pytestmark = pytest.mark.broker


@pytest.fixture
async def fleet(
    broker: BrokerConnection, broker_settings: BrokerSettings, tmp_path: Path
) -> AsyncIterator[Running]:
    settings = WorkerSettings(broker=broker_settings, store_url=f"sqlite:///{tmp_path}/r.db")
    async with run_services(settings, workers=["all"], replica="0") as running:
        yield running


async def test_an_expired_task_answers_its_final_state(
    fleet: Running, make_agent: MakeAgent, client: Client
) -> None:
    agent = make_agent("x-agent")

    @agent.capability("crawl")
    async def crawl(task: Task) -> str:
        return "done"

    await agent.start()
    handle = await client.submit("crawl", {"url": "x"})
    assert await handle.result(timeout=30) == "done"
    before = await client.view(handle)
    assert (before.found, before.expired) == (True, False)

    # what retention does: the row is current and marked, then the streams leave the store
    runner = await tasks_runner(cast(EventStore, fleet.store))
    db = database_for(fleet.store)
    await db.execute(
        "UPDATE readmodel_tasks SET expired = ? WHERE task_id = ?", (True, str(handle.task_id))
    )
    await db.execute("DELETE FROM events WHERE stream = ?", (stream_of(handle.task_id),))
    assert runner.health()[0].error is None

    view = await client.view(handle)
    assert (view.found, view.expired, view.state) == (True, True, "succeeded")
    assert (view.capability, view.agent_id, view.attempt) == ("crawl", "x-agent", 1)
    assert view.timeline == ()
