"""A task whose history retention archived still answers QueryTask: its final state, expired."""

from __future__ import annotations

from typing import cast

import pytest

from sdk import Client, Task
from tests.broker.sdk.conftest import MakeAgent
from workers.readmodels import database_for
from workers.readmodels.task_queries import tasks_runner
from workers.runtime.services import Running
from workers.store.base import EventStore
from workers.tasks.state import stream_of

pytestmark = pytest.mark.broker


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
