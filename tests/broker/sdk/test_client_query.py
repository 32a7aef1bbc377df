"""A task's state and history over the broker: the client asks, the task manager answers.

Runs every worker in this process on a SQLite store the client never sees: the
answer comes as a ``TaskView`` notice, folded by the task manager itself.
"""

from __future__ import annotations

from uuid import uuid4

import pytest

from sdk import Client, Task
from tests.broker.sdk.conftest import MakeAgent
from workers.runtime.services import Running

pytestmark = pytest.mark.broker


async def test_state_and_history_come_from_the_task_manager(
    fleet: Running, make_agent: MakeAgent, client: Client
) -> None:
    agent = make_agent("q-agent")

    @agent.capability("crawl")
    async def crawl(task: Task) -> dict[str, int]:
        await task.progress(0.5, "half way")
        return {"pages": 3}

    await agent.start()
    handle = await client.submit("crawl", {"url": "x"})
    assert await handle.result(timeout=30) == {"pages": 3}

    view = await client.state(handle)
    assert view is not None
    assert (view.task_id, view.found, view.state) == (handle.task_id, True, "succeeded")
    assert (view.capability, view.agent_id, view.attempt) == ("crawl", "q-agent", 1)
    assert view.result == {"pages": 3}
    assert view.error is None
    assert view.updated_at is not None
    assert view.timeline == ()  # state() does not ask for the history

    history = await client.history(handle.task_id)
    types = [e.type for e in history]
    assert types[0] == "TaskSubmitted"
    assert "TaskAssigned" in types
    assert types[-1] == "TaskSucceeded"
    assert [e.version for e in history] == list(range(1, len(history) + 1))
    assert "placed on q-agent" in next(e.summary for e in history if e.type == "TaskAssigned")
    assert (await client.view(handle)).stream_version == len(history)


async def test_a_task_nobody_submitted_has_no_state(fleet: Running, client: Client) -> None:
    assert await client.state(uuid4()) is None
    view = await client.view(uuid4())
    assert not view.found
    assert await client.history(uuid4()) == []


async def test_a_pending_task_reads_as_pending(fleet: Running, client: Client) -> None:
    handle = await client.submit("nobody-has-this", {"n": 1})
    # the submit and the query share a queue but may be handled side by side: ask again
    # until the submit is recorded
    view = None
    while view is None:
        view = await client.state(handle.task_id)
    assert (view.state, view.capability, view.agent_id) == ("pending", "nobody-has-this", None)
