"""state() and history() over a real event store (SQLite in memory); no broker needed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest

from sdk import Client, NoEventStore
from workers.store import NewEvent, SqliteEventStore, open_store


@pytest.fixture
async def store() -> AsyncIterator[SqliteEventStore]:
    s = open_store("sqlite:///:memory:")
    assert isinstance(s, SqliteEventStore)
    await s.start()
    yield s
    await s.close()


def event(type_: str, **data: Any) -> NewEvent:
    return NewEvent(type=type_, data=data)


async def test_state_and_history_fold_the_task_stream(store: SqliteEventStore) -> None:
    tid = uuid4()
    await store.append(
        f"task-{tid}",
        0,
        [
            event("TaskSubmitted", task_id=str(tid), capability="crawl", ready=True),
            event(
                "TaskAssigned",
                task_id=str(tid),
                agent_id="a1",
                attempt=1,
                fencing_token=3,
                reason="least loaded",
            ),
            event("TaskStarted", task_id=str(tid), agent_id="a1", attempt=1),
            event("TaskProgressed", task_id=str(tid), agent_id="a1", attempt=1, progress=0.5),
        ],
    )
    client = Client("c1", store=store)  # reads need no broker connection
    status = await client.state(tid)
    assert status is not None
    assert (status.state, status.capability, status.agent_id) == ("running", "crawl", "a1")
    assert (status.attempt, status.progress, status.version) == (1, 0.5, 4)
    await store.append(
        f"task-{tid}",
        4,
        [event("TaskSucceeded", task_id=str(tid), agent_id="a1", attempt=1, result={"n": 1})],
    )
    status = await client.state(tid)
    assert status is not None
    assert (status.state, status.result) == ("succeeded", {"n": 1})
    history = await client.history(tid)
    assert [e.type for e in history] == [
        "TaskSubmitted",
        "TaskAssigned",
        "TaskStarted",
        "TaskProgressed",
        "TaskSucceeded",
    ]
    assert [e.version for e in history] == [1, 2, 3, 4, 5]


async def test_unknown_task_has_no_state(store: SqliteEventStore) -> None:
    client = Client("c1", store=store)
    assert await client.state(uuid4()) is None
    assert await client.history(uuid4()) == []


async def test_reads_without_a_store_say_what_to_pass() -> None:
    with pytest.raises(NoEventStore, match="store="):
        await Client("c1").state(uuid4())
