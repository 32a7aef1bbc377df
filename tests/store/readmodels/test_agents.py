"""The agents read model on both stores: the registry's fold, load from the tasks read model,
kept current incrementally, and an answer whose cost follows the fleet, not the history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import uuid4

from contracts import (
    AgentDraining,
    AgentJoined,
    AgentLeft,
    AgentLost,
    AgentUpdated,
    Event,
    TaskRequeued,
)
from tests.support.fixtures.store import StoreFactory
from tests.support.task_events import assigned, failed, lifecycle, record, started, submitted
from workers.cli.agents_cmd import agent_rows
from workers.dlq.directory import store_agent_ids
from workers.readmodels import ProjectionRunner, database_for, read_health
from workers.readmodels.agents import (
    AgentsProjection,
    agent_ids,
    agent_list,
    agent_table,
    fleet_runner,
)
from workers.readmodels.sql import ReadModelDb
from workers.registry.state import fold, stream_of
from workers.runtime.messages import load_event, new_event
from workers.store.base import EventStore, NewEvent, RecordedEvent


async def join(store: EventStore, agent_id: str, *events: Event, capacity: int = 2) -> None:
    first = AgentJoined(
        agent_id=agent_id, capabilities=("crawl",), capacity=capacity, labels={"zone": "eu"}
    )
    await store.append(stream_of(agent_id), None, [new_event(e) for e in (first, *events)])


async def more(store: EventStore, agent_id: str, *events: Event) -> None:
    await store.append(stream_of(agent_id), None, [new_event(e) for e in events])


async def test_rows_are_the_registry_fold_with_load_from_the_tasks(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    updated = AgentUpdated(
        agent_id="a", capabilities=("crawl", "llm"), capacity=4, software_version="2.0"
    )
    await join(store, "a", updated)
    await join(store, "b", AgentDraining(agent_id="b"))
    await join(store, "c", AgentLost(agent_id="c", silent_for_s=9.0))
    await join(store, "d", AgentLeft(agent_id="d"))
    held, running, ended, requeued = (uuid4() for _ in range(4))
    await record(store, held, submitted(held), assigned(held, "a"))
    await record(store, running, submitted(running), assigned(running, "a"), started(running, "a"))
    await record(store, ended, submitted(ended), assigned(ended, "b"), failed(ended, "boom", "b"))
    await record(
        store,
        requeued,
        submitted(requeued),
        assigned(requeued, "b"),
        TaskRequeued(task_id=requeued, attempt=2, reason="agent lost"),
    )

    rows = {r["agent_id"]: r for r in await agent_rows(store)}

    for agent_id in "abcd":
        recorded = await store.read(stream_of(agent_id))
        agent = fold(agent_id, [load_event(r) for r in recorded])
        row = rows[agent_id]
        assert (row["status"], row["capabilities"], row["capacity"]) == (
            agent.status,
            list(agent.capabilities),
            agent.capacity,
        )
        assert (row["labels"], row["software_version"]) == (agent.labels, agent.software_version)
        assert row["joined_at"] == recorded[0].recorded_at.isoformat()
        assert row["updated_at"] == recorded[-1].recorded_at.isoformat()
    assert [r["status"] for r in rows.values()] == ["live", "draining", "lost", "left"]
    assert {a: r["load"] for a, r in rows.items()} == {"a": 2, "b": 0, "c": 0, "d": 0}
    # the keys `rally agents --json` printed before the read model are all still there
    assert {
        "agent_id",
        "status",
        "capabilities",
        "capacity",
        "load",
        "labels",
        "software_version",
        "heartbeat_interval_s",
    } <= set(rows["a"])


async def statuses(db: ReadModelDb) -> list[tuple[str, str]]:
    return [(r.agent.agent_id, r.agent.status) for r in await agent_table(db)]


async def test_kept_current_across_runners_and_pages(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    await join(store, "a")
    first = ProjectionRunner(store, [AgentsProjection(store)], page=1)
    await first.catch_up()
    db = first.db
    assert await statuses(db) == [("a", "live")]

    await more(store, "a", AgentDraining(agent_id="a"))
    await join(store, "b")
    await first.catch_up()
    assert await statuses(db) == [
        ("a", "draining"),
        ("b", "live"),
    ]
    # a fresh runner (a new process: nothing in memory) goes on from the rows
    await more(store, "a", AgentLeft(agent_id="a"))
    await ProjectionRunner(store, [AgentsProjection(store)], page=2).catch_up()
    assert await agent_ids(db) == ["a", "b"]
    assert await statuses(db) == [("a", "left"), ("b", "live")]
    # and the first runner, whose memory is now behind the rows, follows them too
    await more(store, "b", AgentLost(agent_id="b", silent_for_s=3.0))
    await first.catch_up()
    assert await statuses(db) == [("a", "left"), ("b", "lost")]


async def test_an_agent_event_it_cannot_read_stops_the_projection_at_it(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    await join(store, "a")
    await store.append(stream_of("a"), None, [NewEvent("AgentTeleported", {"agent_id": "a"})])
    await join(store, "b")
    runner = ProjectionRunner(store, [AgentsProjection(store)], page=100)
    await runner.catch_up()
    (health,) = [h for h in await read_health(runner.db) if h.name == "agents"]
    assert health.stopped
    assert "AgentTeleported" in (health.error or "")
    # what came before it is there; nothing after it is taken as read
    assert await agent_ids(runner.db) == ["a"]


class CountingStore:
    """The store, counting the records ``read_all`` hands out (what a runner reads)."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.records = 0

    async def read_all(self, *args: Any, **kwargs: Any) -> list[RecordedEvent]:
        page: list[RecordedEvent] = await self.inner.read_all(*args, **kwargs)
        self.records += len(page)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_rally_agents_costs_the_fleet_not_the_history(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    await join(store, "a", capacity=8)
    await join(store, "b")
    for n in range(150):  # a long history of ended tasks
        task_id = uuid4()
        await record(store, task_id, *lifecycle(task_id, minutes=n, agent="ab"[n % 2]))
    busy = uuid4()
    await record(store, busy, submitted(busy), assigned(busy, "a"))
    counting = CountingStore(store)
    db = database_for(store)

    first = await agent_rows(counting, db=db)
    assert counting.records > 600  # the first call caught the read models up
    counting.records = 0
    second = await agent_rows(counting, db=db)
    assert counting.records == 0  # nothing new: the answer is two indexed queries
    assert first == second
    assert [(r["agent_id"], r["load"]) for r in second] == [("a", 1), ("b", 0)]

    await more(store, "b", AgentDraining(agent_id="b"))
    third = await agent_rows(counting, db=db)
    assert counting.records == 1  # the tail only
    assert [r["status"] for r in third] == ["live", "draining"]


async def test_fleet_runner_is_the_one_rally_agents_uses(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    await join(store, "a")
    runner = await fleet_runner(store)
    assert sorted(h.name for h in runner.health()) == ["agents", "tasks"]
    assert _names(await agent_list(runner.db)) == ["a"]


def _names(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [r["agent_id"] for r in rows]


async def test_dlq_directory_finds_agents_in_the_read_model(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    await join(store, "b", AgentLeft(agent_id="b"))  # its inbox's DLQ outlives it
    await join(store, "a")
    ids = store_agent_ids(store)
    assert await ids() == ["a", "b"]
    await join(store, "c")
    assert await ids() == ["a", "b", "c"]
