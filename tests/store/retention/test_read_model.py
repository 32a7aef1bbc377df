"""Retention and the read models: a task that leaves is marked expired; nothing a read
model has not applied leaves (both stores, with the read models' own tables)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.store.retention.fleet import NO_OUTBOX, Store, end, submit
from tests.support.fixtures.store import StoreFactory
from workers.readmodels import checkpoint, tasks
from workers.retention.job import run_once
from workers.retention.policy import RetentionSettings
from workers.store.sqlite import SqliteEventStore
from workers.tasks.state import stream_of


async def execute(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """One statement, ``?`` placeholders, on either store."""
    if isinstance(store, SqliteEventStore):
        return await store.write(lambda db: db.execute(sql, params).fetchall())
    n = 0

    def number(_: object) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    async with store.connection() as conn:
        rows = await conn.fetch(re.sub(r"\?", number, sql), *params)
    return [tuple(r) for r in rows]


async def test_expired_rows_and_a_read_model_behind(
    opened: StoreFactory, any_store_url: str, tmp_path: Path
) -> None:
    store = await opened(any_store_url, publishes=NO_OUTBOX)
    for statement in (*tasks.SCHEMA, *checkpoint.SCHEMA):
        await execute(store, statement)
    applied, behind = await submit(store), await submit(store)
    await end(store, applied)
    upto = await store.last_position()  # the read model has applied this far
    await end(store, behind)
    await submit(store)  # the newest event stays anyway
    await execute(
        store,
        f"INSERT INTO {checkpoint.TABLE} (name, position, updated_at) VALUES ('tasks', ?, 'x')",
        upto,
    )
    for task_id in (applied, behind):
        await execute(
            store,
            f"INSERT INTO {tasks.TABLE} (task_id, state, attempt, submitted_at,"
            " updated_position) VALUES (?, 'succeeded', 1, 'x', 1)",
            str(task_id),
        )
    settings = RetentionSettings(
        timedelta(days=7), timedelta(days=1), tmp_path, timedelta(minutes=5)
    )

    report = await run_once(store, settings, datetime.now(UTC) + timedelta(days=8))

    assert report.deleted_tasks == [applied]
    assert report.kept == {"read_model_behind": 1}
    assert report.marked_expired == 1
    assert await store.read(stream_of(behind)) != []
    rows = await execute(store, f"SELECT task_id, expired FROM {tasks.TABLE} ORDER BY task_id")
    assert {str(t): bool(e) for t, e in rows} == {str(applied): True, str(behind): False}
