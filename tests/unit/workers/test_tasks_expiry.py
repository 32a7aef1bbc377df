"""A task pending past its pending_timeout_s ends dead with the reason it waited (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts import SubmitTask, TaskAssigned, TaskDead, TaskSubmitted, decode_payload
from workers.tasks.domain import decide_pending_expired
from workers.tasks.state import Task, evolve, fold

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def pending(timeout_s: float = 60.0, at: datetime = T0) -> Task:
    tid = uuid4()
    spec = TaskSubmitted(
        task_id=tid, capability="c", ready=True, pending_timeout_s=timeout_s, submitted_at=at
    )
    return fold(tid, [spec])


def test_a_task_pending_past_its_timeout_ends_dead_with_why_it_waited() -> None:
    task = pending(60)
    assert decide_pending_expired(task, T0 + timedelta(seconds=59), "no agent") == []
    events = decide_pending_expired(task, T0 + timedelta(seconds=60), "no agent for 'c'")
    assert events == [
        TaskDead(
            task_id=task.task_id, attempt=0, error="pending for more than 60s: no agent for 'c'"
        )
    ]
    assert evolve(task, events[0]).state == "dead"


def test_only_a_pending_task_expires() -> None:
    task = pending(1)
    placed = evolve(
        task,
        TaskAssigned(task_id=task.task_id, agent_id="a", attempt=1, fencing_token=2, reason="r"),
    )
    assert decide_pending_expired(placed, T0 + timedelta(days=9), "x") == []
    assert decide_pending_expired(Task(uuid4()), T0 + timedelta(days=9), "x") == []


def test_a_task_recorded_without_a_submit_time_never_expires() -> None:
    # TaskSubmitted version 1 from before submit times: upcast with the record's time and
    # the longest pending time-out, so it does not expire because of the upgrade
    tid = uuid4()
    old = {"task_id": str(tid), "capability": "c", "ready": True, "submitted_by": "u"}
    spec = decode_payload("TaskSubmitted", 1, old, recorded_at=T0)
    task = fold(tid, [spec])  # type: ignore[list-item]
    assert decide_pending_expired(task, T0 + timedelta(days=9), "x") == []


def test_pending_timeout_defaults_to_a_day_and_must_be_positive() -> None:
    assert SubmitTask(capability="c").pending_timeout_s == 86400
    with pytest.raises(ValidationError):
        SubmitTask(capability="c", pending_timeout_s=0)
