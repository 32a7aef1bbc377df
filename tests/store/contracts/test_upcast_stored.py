"""A v1 TaskSubmitted written raw into a real store (SQLite and PostgreSQL) reads back as v2
(load_event)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from contracts import TaskSubmitted, utcnow
from contracts.versions import set_write_versions
from workers.runtime.messages import load_event, new_event
from workers.store.base import EventStore, NewEvent
from workers.tasks.state import fold


@pytest.fixture
def store(any_store: EventStore) -> EventStore:
    return any_store  # a started store of each adapter (tests/support/fixtures/store.py)


async def test_a_v1_record_from_before_submit_times_reads_back_as_v2(store: EventStore) -> None:
    task = uuid4()
    # exactly what a release before owners and submit times appended
    old = {"task_id": str(task), "capability": "crawl", "ready": True, "submitted_by": "c-7"}
    await store.append(f"task-{task}", 0, [NewEvent("TaskSubmitted", old, schema_version=1)])
    (record,) = await store.read(f"task-{task}")
    assert record.schema_version == 1

    event = load_event(record)
    assert isinstance(event, TaskSubmitted)
    assert event.version == 2
    assert event.submitted_at == record.recorded_at
    state = fold(task, [event])
    assert state.submitted_at == record.recorded_at
    assert state.inbox == "c-7"  # the reply rule of its time, now in the record itself


async def test_this_release_appends_v1_and_reads_its_own_records_whole(store: EventStore) -> None:
    set_write_versions({})
    try:
        task = uuid4()
        written = TaskSubmitted(
            task_id=task,
            capability="crawl",
            ready=True,
            submitted_at=utcnow(),
            owner="alice",
            reply_to="client-alice",
        )
        await store.append(f"task-{task}", 0, [new_event(written)])
        (record,) = await store.read(f"task-{task}")
        assert record.schema_version == 1  # the previous release still reads the store
        assert load_event(record) == written
    finally:
        set_write_versions(None)
