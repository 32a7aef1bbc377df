"""Real task histories, built event by event and recorded on a task's stream."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

from contracts import (
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskFailed,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.runtime.messages import new_event
from workers.store.base import EventStore
from workers.tasks.state import stream_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def record(store: EventStore, task_id: UUID, *events: Event) -> None:
    await store.append(stream_of(task_id), None, [new_event(e) for e in events])


def submitted(
    task_id: UUID,
    *,
    capability: str = "crawl",
    minutes: float = 0,
    priority: int = 0,
    owner: str | None = "alice",
) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        capability=capability,
        ready=True,
        priority=priority,
        submitted_by=owner or "unknown",
        owner=owner,
        submitted_at=T0 + timedelta(minutes=minutes),
    )


def assigned(task_id: UUID, agent: str = "w1", attempt: int = 1) -> TaskAssigned:
    return TaskAssigned(
        task_id=task_id, agent_id=agent, attempt=attempt, fencing_token=attempt, reason="test"
    )


def started(task_id: UUID, agent: str = "w1", attempt: int = 1) -> TaskStarted:
    return TaskStarted(
        task_id=task_id, agent_id=agent, attempt=attempt, deadline=T0 + timedelta(hours=1)
    )


def succeeded(task_id: UUID, agent: str = "w1", attempt: int = 1) -> TaskSucceeded:
    return TaskSucceeded(task_id=task_id, agent_id=agent, attempt=attempt, result="ok")


def failed(task_id: UUID, error: str, agent: str = "w1", attempt: int = 1) -> TaskFailed:
    return TaskFailed(task_id=task_id, agent_id=agent, attempt=attempt, error=error)


def cancelled(task_id: UUID, reason: str = "no longer needed") -> TaskCancelled:
    return TaskCancelled(task_id=task_id, reason=reason)


def lifecycle(task_id: UUID, minutes: float = 0, agent: str = "w1") -> Sequence[Event]:
    return (
        submitted(task_id, minutes=minutes),
        assigned(task_id, agent),
        started(task_id, agent),
        succeeded(task_id, agent),
    )
