"""The tasks read model on both stores: rows from the task fold, filters and pages."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from contracts import TaskProgressed, TaskRequeued
from tests.support.fixtures.store import StoreFactory
from tests.support.task_events import (
    T0,
    assigned,
    cancelled,
    failed,
    lifecycle,
    record,
    started,
    submitted,
)
from workers.readmodels import ProjectionRunner
from workers.readmodels.task_queries import (
    BadCursor,
    TaskFilter,
    TaskRow,
    get_task,
    list_tasks,
    tasks_runner,
)
from workers.readmodels.tasks import TasksProjection
from workers.store.base import EventStore


async def _story(store: EventStore) -> dict[str, UUID]:
    ids = {name: uuid4() for name in ("done", "retrying", "cancelled", "waiting")}
    await record(store, ids["done"], *lifecycle(ids["done"], minutes=1))
    await record(store, ids["retrying"], submitted(ids["retrying"], minutes=2))
    await record(store, ids["cancelled"], submitted(ids["cancelled"], minutes=3))
    await record(store, ids["retrying"], assigned(ids["retrying"], "w2"), started(ids["retrying"]))
    await record(store, ids["cancelled"], cancelled(ids["cancelled"], "user asked"))
    await record(store, ids["retrying"], failed(ids["retrying"], "connection reset"))
    await record(store, ids["waiting"], submitted(ids["waiting"], capability="render", priority=5))
    return ids


async def test_rows_are_the_fold_of_each_task(any_store_url: str, opened: StoreFactory) -> None:
    store = await opened(any_store_url)
    ids = await _story(store)
    runner = await tasks_runner(store)
    rows = {name: await get_task(runner.db, task_id) for name, task_id in ids.items()}
    done, retrying, gone, waiting = (rows[n] for n in ("done", "retrying", "cancelled", "waiting"))
    assert done is not None
    assert retrying is not None
    assert gone is not None
    assert waiting is not None
    assert (done.state, done.agent_id, done.attempt, done.owner) == ("succeeded", "w1", 1, "alice")
    assert done.submitted_at == (T0 + timedelta(minutes=1)).isoformat(timespec="microseconds")
    assert done.started_at is not None
    assert done.ended_at is not None
    assert (retrying.state, retrying.agent_id, retrying.error) == (
        "failed",
        "w2",
        "connection reset",
    )
    assert retrying.started_at is not None
    assert retrying.ended_at is None
    assert (gone.state, gone.error, gone.started_at) == ("cancelled", "user asked", None)
    assert gone.ended_at is not None
    assert (waiting.state, waiting.capability, waiting.priority) == ("pending", "render", 5)
    assert not any(r.expired for r in (done, retrying, gone, waiting))


async def test_folding_from_the_store_on_a_cache_miss_gives_the_same_rows(
    any_store_url: str, opened: StoreFactory
) -> None:
    store = await opened(any_store_url)
    ids = await _story(store)
    # no cache at all, a record a page: every task is folded from its stream each time
    cold = ProjectionRunner(store, [TasksProjection(store, cache_size=0)], page=1)
    await cold.catch_up()
    expected = [await get_task(cold.db, i) for i in ids.values()]
    await cold.db.execute("DELETE FROM readmodel_tasks")
    await cold.db.execute("UPDATE readmodel_checkpoints SET position = 0")
    warm = await tasks_runner(store)
    assert [await get_task(warm.db, i) for i in ids.values()] == expected


async def test_filters_and_pages_newest_first(any_store_url: str, opened: StoreFactory) -> None:
    store = await opened(any_store_url)
    ids = [uuid4() for _ in range(25)]
    for n, task_id in enumerate(ids):
        capability = "crawl" if n % 2 == 0 else "render"
        await record(store, task_id, submitted(task_id, capability=capability, minutes=n))
        if n % 5 == 0:
            await record(store, task_id, assigned(task_id, f"w{n % 3}"), started(task_id))
    runner = await tasks_runner(store)
    newest_first = [str(i) for i in reversed(ids)]

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        page = await list_tasks(runner.db, TaskFilter(), limit=10, cursor=cursor)
        seen += [r.task_id for r in page.rows]
        cursor = page.next_cursor
    assert seen == newest_first
    assert cursor is None

    def ids_of(rows: list[TaskRow]) -> set[str]:
        return {r.task_id for r in rows}

    running = await list_tasks(runner.db, TaskFilter(state="running"))
    assert ids_of(running.rows) == {str(ids[n]) for n in (0, 5, 10, 15, 20)}
    render = await list_tasks(runner.db, TaskFilter(capability="render", state="pending"))
    assert ids_of(render.rows) == {str(ids[n]) for n in range(25) if n % 2 and n % 5}
    on_w0 = await list_tasks(runner.db, TaskFilter(agent_id="w0"))
    assert ids_of(on_w0.rows) == {str(ids[n]) for n in (0, 15)}
    recent = await list_tasks(runner.db, TaskFilter(since=T0 + timedelta(minutes=20)))
    assert [r.task_id for r in recent.rows] == newest_first[:5]

    # a cursor is exact: tasks submitted after the first page do not shift the next one
    first = await list_tasks(runner.db, TaskFilter(), limit=10)
    newer = uuid4()
    await record(store, newer, submitted(newer, minutes=100))
    await runner.catch_up()
    second = await list_tasks(runner.db, TaskFilter(), limit=10, cursor=first.next_cursor)
    assert [r.task_id for r in second.rows] == newest_first[10:20]
    with pytest.raises(BadCursor):
        await list_tasks(runner.db, TaskFilter(), cursor="not-a-cursor")


async def test_progress_is_the_running_attempts_and_a_new_attempt_clears_it(
    any_store_url: str, opened: StoreFactory
) -> None:
    store = await opened(any_store_url)
    task_id = uuid4()

    def progressed(value: float, attempt: int = 1) -> TaskProgressed:
        return TaskProgressed(task_id=task_id, agent_id="w1", attempt=attempt, progress=value)

    await record(store, task_id, submitted(task_id), assigned(task_id), started(task_id))
    await record(store, task_id, progressed(0.25), progressed(0.5))
    runner = await tasks_runner(store)
    row = await get_task(runner.db, task_id)
    assert row is not None
    assert row.progress == 0.5
    await record(store, task_id, failed(task_id, "boom"))  # a page that says nothing of it
    await runner.catch_up()
    row = await get_task(runner.db, task_id)
    assert row is not None
    assert row.progress == 0.5
    retry = TaskRequeued(task_id=task_id, attempt=2, reason="retry")
    await record(store, task_id, retry, assigned(task_id, attempt=2))
    await runner.catch_up()
    row = await get_task(runner.db, task_id)
    assert row is not None
    assert row.progress is None
