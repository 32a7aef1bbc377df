"""The drain index (``Holdings.held_by``) against both real stores.

It starts from the tasks read model's open assignments and checkpoint, and
follows only the task records after that checkpoint: on a long history it reads
the tail, not the history, and answers as a fold of the whole history does,
including for tasks assigned, reassigned or ended after the read model last
caught up. A store with no read model yet is read from the start, as before.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID, uuid4

from contracts import Event, TaskRequeued
from tests.support.fixtures.store import Store
from tests.support.task_events import assigned, failed, record, started, submitted, succeeded
from workers.readmodels.checkpoint import load as load_checkpoint
from workers.readmodels.sql import database_for
from workers.readmodels.task_queries import tasks_runner
from workers.registry.holdings import Holdings
from workers.store.base import EventStore, RecordedEvent
from workers.tasks.state import ACTIVE
from workers.tasks.timeline import all_tasks

AGENTS = ("a1", "a2", "a3", "nobody")
FILLER = 60  # ended tasks: the months of history a first drain must not read


class Counting:
    """The real store, counting the records its history reads (``read_all``) hand back."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.history_records = 0

    async def read_all(self, *args: Any, **kwargs: Any) -> list[RecordedEvent]:
        page = await self.store.read_all(*args, **kwargs)
        self.history_records += len(page)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def requeued(task_id: UUID, attempt: int) -> TaskRequeued:
    return TaskRequeued(task_id=task_id, attempt=attempt, reason="retry")


async def full_fold(store: Store) -> dict[str, frozenset[UUID]]:
    """What the whole history gives each agent: every task folded from position 0."""
    held: dict[str, set[UUID]] = {}
    for task in await all_tasks(store):
        if task.state in ACTIVE and task.agent_id is not None:
            held.setdefault(task.agent_id, set()).add(task.task_id)
    return {agent: frozenset(held.get(agent, ())) for agent in AGENTS}


async def months_of_history(store: Store) -> dict[str, UUID]:
    """Open and ended assignments, and many ended tasks; returns the tasks by name."""
    for _ in range(FILLER):
        old = uuid4()
        await record(store, old, submitted(old), assigned(old, "a3"), succeeded(old, "a3"))
    t = {name: uuid4() for name in ("ended", "running", "waiting", "moved", "late", "gone")}
    await record(store, t["ended"], submitted(t["ended"]), assigned(t["ended"], "a1"))
    await record(store, t["ended"], started(t["ended"], "a1"), succeeded(t["ended"], "a1"))
    await record(store, t["running"], submitted(t["running"]), assigned(t["running"], "a1"))
    await record(store, t["running"], started(t["running"], "a1"))
    await record(store, t["waiting"], submitted(t["waiting"]), assigned(t["waiting"], "a2"))
    moved: list[Event] = [submitted(t["moved"]), assigned(t["moved"], "a1")]
    moved += [failed(t["moved"], "boom", "a1"), requeued(t["moved"], 2)]
    await record(store, t["moved"], *moved, assigned(t["moved"], "a2", attempt=2))
    await record(store, t["gone"], submitted(t["gone"]), assigned(t["gone"], "a2"))
    return t


async def after_the_catch_up(store: Store, t: dict[str, UUID]) -> None:
    """Written after the read model's last catch-up: only the store's tail knows it."""
    await record(store, t["late"], submitted(t["late"]), assigned(t["late"], "a1"))
    await record(store, t["waiting"], succeeded(t["waiting"], "a2"))
    running = t["running"]
    await record(store, running, failed(running, "lost", "a1"), requeued(running, 2))
    await record(store, running, assigned(running, "a3", attempt=2))
    await record(store, t["gone"], failed(t["gone"], "boom", "a2"), requeued(t["gone"], 2))


async def test_the_index_starts_at_the_read_model_and_answers_as_the_whole_history(
    any_store: Store,
) -> None:
    t = await months_of_history(any_store)
    await tasks_runner(any_store)  # the read models service's last catch-up
    checkpoint = await load_checkpoint(database_for(any_store), "tasks")
    await after_the_catch_up(any_store, t)
    tail = await any_store.last_position() - checkpoint.position
    assert tail > 0

    expected = await full_fold(any_store)
    assert expected["a1"] == {t["late"]}
    assert expected["a2"] == {t["moved"]}
    assert expected["a3"] == {t["running"]}

    counting = Counting(any_store)
    holdings = Holdings(cast(EventStore, counting))
    for agent in AGENTS:
        assert await holdings.held_by(agent) == expected[agent], agent
    # the tail since the read model's checkpoint, not the months before it
    assert counting.history_records == tail

    # later drains follow the store from there, as before
    more = uuid4()
    await record(any_store, more, submitted(more), assigned(more, "nobody"))
    assert await holdings.held_by("nobody") == {more}
    assert await holdings.held_by("a1") == {t["late"]}


async def test_a_store_without_a_read_model_is_read_from_the_start(any_store: Store) -> None:
    t = await months_of_history(any_store)
    await after_the_catch_up(any_store, t)
    expected = await full_fold(any_store)
    counting = Counting(any_store)
    holdings = Holdings(cast(EventStore, counting))
    for agent in AGENTS:
        assert await holdings.held_by(agent) == expected[agent], agent
    assert counting.history_records == await any_store.last_position()
