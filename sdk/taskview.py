"""A task's state and history, read from the event store — a fold with no I/O.

broker/ must not import workers/, so the store is anything with the read side
of the event store's Protocol (``workers.store`` adapters fit), passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID


class StoredEvent(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    @property
    def recorded_at(self) -> datetime: ...


class EventReader(Protocol):
    async def read(self, stream: str, from_version: int = 1) -> Sequence[StoredEvent]: ...


def task_stream(task_id: UUID) -> str:
    return f"task-{task_id}"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    version: int
    type: str
    at: datetime
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TaskStatus:
    task_id: UUID
    state: str
    capability: str | None = None
    attempt: int = 0
    agent_id: str | None = None
    progress: float | None = None
    result: Any = None
    error: str | None = None
    version: int = 0
    updated_at: datetime | None = None


# event type → the state it leaves the task in (None: the state does not change)
_STATE: dict[str, str | None] = {
    "TaskSubmitted": "pending",
    "TaskReady": "pending",
    "TaskAssigned": "assigned",
    "TaskStarted": "running",
    "TaskProgressed": None,
    "TaskSucceeded": "succeeded",
    "TaskFailed": "failed",
    "TaskRetryScheduled": "failed",
    "TaskRequeued": "pending",
    "TaskCancelled": "cancelled",
    "TaskDead": "dead",
}


def evolve(status: TaskStatus, event: TaskEvent) -> TaskStatus:
    d = event.data
    changes: dict[str, Any] = {"version": event.version, "updated_at": event.at}
    state = _STATE.get(event.type)
    if state is not None:
        changes["state"] = state
    if event.type == "TaskSubmitted":
        changes["capability"] = d.get("capability")
    elif event.type == "TaskAssigned":
        changes.update(
            attempt=d.get("attempt", status.attempt), agent_id=d.get("agent_id"), progress=None
        )
    elif event.type == "TaskProgressed":
        changes["progress"] = d.get("progress")
    elif event.type == "TaskSucceeded":
        changes.update(result=d.get("result"), progress=1.0, error=None)
    elif event.type in ("TaskFailed", "TaskDead"):
        changes["error"] = d.get("error")
    elif event.type == "TaskCancelled":
        changes["error"] = d.get("reason")
    elif event.type == "TaskRequeued":
        changes["agent_id"] = None
    return replace(status, **changes)


def fold(task_id: UUID, events: Iterable[TaskEvent]) -> TaskStatus | None:
    status: TaskStatus | None = None
    for event in events:
        status = evolve(status or TaskStatus(task_id=task_id, state="pending"), event)
    return status


async def read_history(store: EventReader, task_id: UUID) -> list[TaskEvent]:
    return [
        TaskEvent(version=e.version, type=e.type, at=e.recorded_at, data=dict(e.data))
        for e in await store.read(task_stream(task_id))
    ]
