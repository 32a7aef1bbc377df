"""The dashboard reads the read models: a refresh costs the tail since the last one, and
the task list pages on the tasks read model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from broker.settings import BrokerSettings
from contracts import AgentJoined, Event, TaskAssigned, TaskSubmitted
from workers.dashboard.service import Dashboard, DashboardConfig
from workers.runtime.messages import new_event
from workers.store import EventStore, open_store
from workers.store.base import RecordedEvent


class CountingStore:
    """The store, counting the records ``read_all`` hands out (what the runner reads)."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.records = 0

    async def read_all(self, *args: Any, **kwargs: Any) -> list[RecordedEvent]:
        page: list[RecordedEvent] = await self.inner.read_all(*args, **kwargs)
        self.records += len(page)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def submit(store: EventStore) -> None:
    task_id = uuid4()
    event = TaskSubmitted(
        task_id=task_id, capability="echo", ready=True, submitted_at=datetime.now(UTC)
    )
    await store.append(f"task-{task_id}", 0, [new_event(event)])


async def test_a_refresh_reads_only_what_was_recorded_since_the_last(any_store_url: str) -> None:
    store_url = any_store_url
    store = open_store(store_url)
    await store.start()
    await store.append(
        "agent-w1", 0, [new_event(AgentJoined(agent_id="w1", capabilities=("echo",), capacity=2))]
    )
    for _ in range(7):
        await submit(store)
    config = DashboardConfig(store_url=store_url, broker=BrokerSettings(namespace="unused"))
    dashboard = Dashboard(config)  # not started: no loops, no broker; its store opened by hand
    await dashboard.store.start()
    counting = CountingStore(dashboard.store)
    dashboard.store = counting
    try:
        await dashboard.catch_up()
        assert counting.records == 8
        assert dashboard.view.by_state == {"pending": 7}
        assert [line.agent_id for line in dashboard.view.agents] == ["w1"]

        counting.records = 0
        await dashboard.catch_up()
        assert counting.records == 0  # nothing new: the views are indexed queries

        await submit(store)
        await dashboard.catch_up()
        assert counting.records == 1
        assert dashboard.view.by_state == {"pending": 8}
        assert dashboard.overview()["store"]["position"] == 9
    finally:
        await dashboard.store.close()
        await store.close()


async def test_the_task_list_pages_by_state_with_a_cursor(any_store_url: str) -> None:
    store_url = any_store_url
    store = open_store(store_url)
    await store.start()
    ids = []
    for _ in range(5):
        task_id = uuid4()
        ids.append(str(task_id))
        events: list[Event] = [
            TaskSubmitted(
                task_id=task_id, capability="echo", ready=True, submitted_at=datetime.now(UTC)
            )
        ]
        if len(ids) % 2:
            events.append(
                TaskAssigned(
                    task_id=task_id, agent_id="w1", attempt=1, fencing_token=1, reason="test"
                )
            )
        await store.append(f"task-{task_id}", 0, [new_event(e) for e in events])
    config = DashboardConfig(store_url=store_url, broker=BrokerSettings(namespace="unused"))
    dashboard = Dashboard(config)
    await dashboard.store.start()
    try:
        await dashboard.catch_up()
        first = await dashboard.tasks("assigned", 2, None)
        assert first["next_cursor"] is not None
        second = await dashboard.tasks("assigned", 2, first["next_cursor"])
        assert second["next_cursor"] is None
        listed = [t["task_id"] for t in first["tasks"] + second["tasks"]]
        assert sorted(listed) == sorted(ids[0::2])  # each assigned task once, nothing else
        assert all(t["state"] == "assigned" for t in first["tasks"] + second["tasks"])
    finally:
        await dashboard.store.close()
        await store.close()
