"""The retention job on both stores: what leaves the hot store, what stays, what comes back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.store.retention.fleet import NO_OUTBOX, Store, end, record, run, submit, submitted
from tests.support.fixtures.store import StoreFactory
from workers.retention.archive import import_file, read_file
from workers.retention.job import run_once
from workers.retention.policy import RetentionSettings
from workers.store.base import RecordedEvent
from workers.store.sqlite import SqliteEventStore
from workers.tasks.state import key_stream, stream_of

WEEK = timedelta(days=7)


def settings(archive: Path) -> RetentionSettings:
    return RetentionSettings(
        retention=WEEK,
        processed_horizon=timedelta(days=1),
        archive=archive,
        interval=timedelta(minutes=5),
        batch=3,  # several batches, one transaction each
    )


async def processed(store: Store, keys: list[str]) -> set[str]:
    """Which of these keys the store still holds as processed messages."""
    if isinstance(store, SqliteEventStore):
        rows = await store.fetch(
            "SELECT key FROM processed_messages WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),),
        )
        return {str(r[0]) for r in rows}
    async with store.connection() as conn:
        found = await conn.fetch(
            "SELECT key FROM processed_messages WHERE key = ANY($1::text[])", keys
        )
    return {str(r[0]) for r in found}


def same(events: list[RecordedEvent]) -> list[tuple[object, ...]]:
    """An event as import keeps it: everything but its position."""
    return [
        (e.stream, e.version, e.id, e.type, e.schema_version, e.data, e.metadata, e.recorded_at)
        for e in events
    ]


async def test_old_ended_tasks_leave_with_their_keys_timers_and_ids_the_rest_stays(
    opened: StoreFactory, any_store_url: str, tmp_path: Path
) -> None:
    store = await opened(any_store_url, publishes=NO_OUTBOX)
    # old and ended: all three endings; one with a key, a timer left over and a snapshot
    done = await submit(store, key="order-1")
    await run(store, done, timer=True)
    done_key = await end(store, done)
    await store.save_snapshot(stream_of(done), 3, {"any": "state"})
    cancelled, dead = await submit(store), await submit(store)
    await end(store, cancelled, "cancelled")
    await end(store, dead, "dead")
    # old, not ended
    pending = await submit(store, key="order-2")
    running = await submit(store)
    await run(store, running)
    # old and ended, but a dependent still waits on it
    needed = await submit(store)
    waiting = await submit(store, depends_on=(needed,))
    await end(store, needed)
    # old and ended, and so is its dependent
    parent = await submit(store)
    child = await submit(store, depends_on=(parent,))
    await end(store, child, "cancelled")
    await end(store, parent)
    old = [done, cancelled, dead, parent, child]
    gone = {stream_of(t) for t in old} | {key_stream("order-1")}
    before = [e for e in await store.read_all(0, 10_000) if e.stream in gone]
    cutoff = datetime.now(UTC)
    recent = await submit(store)
    await end(store, recent)

    report = await run_once(store, settings(tmp_path), cutoff + WEEK)

    assert sorted(map(str, report.deleted_tasks)) == sorted(map(str, old))
    assert report.kept == {"live_dependent": 1}  # the others never ended: not candidates
    for task_id in old:
        assert await store.read(stream_of(task_id)) == []
    assert await store.read(key_stream("order-1")) == []
    for task_id in (pending, running, needed, waiting, recent):
        assert await store.read(stream_of(task_id)) != []
    assert await store.read(key_stream("order-2")) != []
    assert await store.outbox_pending() == 0  # the ended task's timer
    assert await store.load_snapshot(stream_of(done)) is None
    assert await processed(store, [done_key]) == set()

    # the archive holds exactly what left, and brings it back
    archived = [e for path in report.archives for e in read_file(path)]
    assert len(report.archives) == 2  # batches of 3
    assert same(sorted(archived, key=lambda e: e.position)) == same(before)
    last = await store.last_position()
    for path in report.archives:
        await import_file(store, path)
        await import_file(store, path)  # twice: the second adds nothing
    back = [e for e in await store.read_all(last, 10_000) if e.stream in gone]
    assert same(back) == same(before)
    assert all(e.position > last for e in back)  # new positions, after everything


async def test_the_newest_event_stays_so_no_position_is_handed_out_twice(
    opened: StoreFactory, any_store_url: str, tmp_path: Path
) -> None:
    store = await opened(any_store_url, publishes=NO_OUTBOX)
    first = await submit(store)
    await end(store, first)
    newest = await submit(store)
    await end(store, newest)
    top = await store.last_position()
    later = datetime.now(UTC) + WEEK + timedelta(seconds=1)

    report = await run_once(store, settings(tmp_path), later)

    assert report.deleted_tasks == [first]
    assert report.kept == {"last_position": 1}
    assert await store.last_position() == top
    another = await submit(store)
    assert (await store.read(stream_of(another)))[0].position == top + 1
    report = await run_once(store, settings(tmp_path), later + timedelta(days=1))
    assert report.deleted_tasks == [newest]  # no longer the newest


async def test_an_unpublished_event_keeps_its_task_until_it_is_out(
    opened: StoreFactory, any_store_url: str, tmp_path: Path
) -> None:
    store = await opened(any_store_url)  # an outbox row per event; no relay publishes them
    task_id = await submit(store)
    await end(store, task_id)
    await submit(store)
    later = datetime.now(UTC) + WEEK

    report = await run_once(store, settings(tmp_path), later)
    assert report.kept.get("outbox_pending") == 1
    assert await store.read(stream_of(task_id)) != []


async def test_retention_off_keeps_everything(
    opened: StoreFactory, any_store_url: str, tmp_path: Path
) -> None:
    store = await opened(any_store_url, publishes=NO_OUTBOX)
    task_id = await submit(store)
    await end(store, task_id)
    await record(store, task_id)  # nothing: keeps the task from being the newest
    await submit(store)
    keep = RetentionSettings(None, timedelta(days=1), tmp_path, timedelta(minutes=5))
    report = await run_once(store, keep, datetime.now(UTC) + 100 * WEEK)
    assert report.deleted_tasks == []
    assert await store.read(stream_of(task_id)) != []
    assert submitted(task_id).task_id == task_id
