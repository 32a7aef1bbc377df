"""The history builder writes a history the fleet could have written, on both stores."""

from __future__ import annotations

import pytest

from tests.support.fixtures.store import pg_server_url, pg_url  # noqa: F401 - the fixtures, reused
from workers.bench.history_build import HistoryShape, build_history, never_published
from workers.bench.history_verify import verify
from workers.store import open_store


async def _build_and_check(url: str, tasks: int) -> None:
    store = open_store(url, publishes=never_published)
    await store.start()
    try:
        built = await build_history(store, HistoryShape(tasks=tasks, open_tasks=4, batch=7))
        report, unexpected = await verify(store, built.open_task_ids)
        assert unexpected == []
        assert report.submitted == tasks
        assert len(built.open_task_ids) == 4
        assert set(report.unfinished()) == built.open_task_ids  # only those left open
        assert sum(report.terminal.values()) == tasks - 4
        assert report.assignments >= tasks - 4 - built.outcomes["cancelled_pending"]
        assert built.events == await store.last_position()
        assert built.sample_task_id in report.states
        assert report.states[built.sample_task_id]  # the sample for `task show` has ended
        assert len(built.agents) == 12
        assert await store.outbox_pending() == 0  # its messages went out long ago
    finally:
        await store.close()


async def test_builds_a_valid_history_on_sqlite(tmp_path: object) -> None:
    await _build_and_check(f"sqlite:///{tmp_path}/history.db", 20)


async def test_builds_a_valid_history_with_every_fate(tmp_path: object) -> None:
    """Large enough that every fate (retried, dead, cancelled, progress) occurs."""
    store = open_store(f"sqlite:///{tmp_path}/history.db", publishes=never_published)
    await store.start()
    try:
        built = await build_history(store, HistoryShape(tasks=1_500))
        report, unexpected = await verify(store, built.open_task_ids)
    finally:
        await store.close()
    assert unexpected == []
    for fate in ("retried", "dead_rejected", "dead_exhausted", "cancelled_pending", "progress"):
        assert built.outcomes[fate] > 0, fate
    assert report.reassigned == 0
    assert report.failed_attempts > 0
    assert set(report.terminal) == {"TaskSucceeded", "TaskDead", "TaskCancelled"}


@pytest.mark.postgres
async def test_builds_a_valid_history_on_postgres(pg_url: str) -> None:  # noqa: F811
    await _build_and_check(pg_url, 20)
