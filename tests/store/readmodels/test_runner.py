"""The projection runner on both stores: checkpoint and writes in one transaction,
racing runners, and a record a projection cannot read stopping only that projection."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import pytest

from contracts import TaskStarted
from contracts.versions import _UP
from tests.support.fixtures.store import StoreFactory
from tests.support.task_events import assigned, lifecycle, record, started, submitted
from workers.readmodels import ProjectionRunner, Tx, database_for, read_health
from workers.readmodels.task_queries import get_task
from workers.readmodels.tasks import TasksProjection
from workers.runtime.messages import new_event
from workers.store.base import NewEvent, RecordedEvent
from workers.store.errors import StoreError
from workers.tasks.state import stream_of


class Count:
    """Counts records per stream with ``n = n + 1``: applying a record twice would show."""

    name = "count"
    schema = ("CREATE TABLE IF NOT EXISTS rm_count (stream TEXT PRIMARY KEY, n BIGINT NOT NULL)",)
    streams: str | None = None

    def __init__(self, poison: str | None = None) -> None:
        self.poison = poison  # a stream whose records get a statement the database refuses

    async def apply(self, tx: Tx, records: Sequence[RecordedEvent]) -> None:
        for r in records:
            tx.execute(
                "INSERT INTO rm_count (stream, n) VALUES (?, 1)"
                " ON CONFLICT (stream) DO UPDATE SET n = rm_count.n + 1",
                (r.stream,),
            )
            if r.stream == self.poison:
                tx.execute("INSERT INTO no_such_table (x) VALUES (?)", (1,))


async def counts(runner: ProjectionRunner) -> dict[str, int]:
    return {s: int(n) for s, n in await runner.db.fetch("SELECT stream, n FROM rm_count")}


async def _fill(store: Any, streams: int, events: int) -> dict[str, int]:
    expected: dict[str, int] = {}
    for i in range(events):
        stream = f"s-{i % streams}"
        await store.append(stream, None, [NewEvent("Noted", {"i": i})])
        expected[stream] = expected.get(stream, 0) + 1
    return expected


async def test_racing_runners_apply_each_record_once(
    any_store_url: str, opened: StoreFactory
) -> None:
    store = await opened(any_store_url)
    expected = await _fill(store, streams=7, events=300)
    # four runners, each on its own store (own connections), small pages: they collide
    runners = [ProjectionRunner(await opened(any_store_url), [Count()], page=7) for _ in range(4)]
    for runner in runners:
        await runner.start()
    await asyncio.gather(*(r.catch_up() for r in runners))
    assert await counts(runners[0]) == expected
    (health,) = await read_health(runners[0].db)
    assert (health.position, health.error) == (300, None)


async def test_a_refused_commit_writes_nothing_and_keeps_the_checkpoint(
    any_store_url: str, opened: StoreFactory
) -> None:
    store = await opened(any_store_url)
    await _fill(store, streams=3, events=9)  # s-0, s-1, s-2, s-0, ...
    runner = ProjectionRunner(store, [Count(poison="s-2")], page=100)
    with pytest.raises(StoreError):
        await runner.catch_up()
    assert await counts(runner) == {}  # the page's other rows rolled back with it
    (health,) = await read_health(runner.db)
    assert health.position == 0
    # the same page, applied by a healthy release: once, exactly
    fixed = ProjectionRunner(store, [Count()], page=4)
    await fixed.catch_up()
    assert await counts(fixed) == {"s-0": 3, "s-1": 3, "s-2": 3}


async def test_an_unreadable_record_stops_that_projection_at_it_until_a_release_reads_it(
    any_store_url: str, opened: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await opened(any_store_url)
    done, stuck, later = uuid4(), uuid4(), uuid4()
    await record(store, done, *lifecycle(done))
    await record(store, stuck, submitted(stuck, minutes=1), assigned(stuck))
    # a newer release's TaskStarted (version 2): this release has no contract for it
    v2 = new_event(started(stuck))
    await store.append(stream_of(stuck), None, [NewEvent(v2.type, v2.data, schema_version=2)])
    bad = await store.last_position()
    await record(store, later, submitted(later, minutes=2))
    last = await store.last_position()

    runner = ProjectionRunner(store, [TasksProjection(store), Count()], page=100)
    await runner.catch_up()
    tasks_health, count_health = runner.health()
    assert tasks_health.error_position == bad
    assert tasks_health.position == bad - 1  # everything before it is applied
    assert tasks_health.error is not None
    assert "TaskStarted" in tasks_health.error
    assert "version 2" in tasks_health.error
    assert (count_health.position, count_health.error) == (last, None)  # the rest goes on
    db = database_for(store)
    assert [(h.name, h.error_position) for h in await read_health(db)] == [
        ("count", None),
        ("tasks", bad),
    ]
    row = await get_task(db, done)
    assert row is not None
    assert row.state == "succeeded"
    row = await get_task(db, stuck)
    assert row is not None
    assert row.state == "assigned"
    assert await get_task(db, later) is None  # not skipped past: not applied yet

    # the fix ships: TaskStarted version 2, and an upcaster from version 1
    monkeypatch.setattr(TaskStarted, "version", 2)
    monkeypatch.setitem(_UP, ("TaskStarted", 1), lambda payload, _origin: payload)
    restarted = ProjectionRunner(store, [TasksProjection(store), Count()], page=100)
    await restarted.catch_up()
    assert [(h.position, h.error) for h in restarted.health()] == [(last, None), (last, None)]
    row = await get_task(db, stuck)
    assert row is not None
    assert (row.state, row.started_at) != ("assigned", None)
    assert row.state == "running"
    row = await get_task(db, later)
    assert row is not None
    assert row.state == "pending"
    assert await counts(restarted) == await counts(runner)  # counted once, not again
