"""A task's history in words (``rally task show``, QueryTask, the dashboard)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any
from uuid import UUID

from contracts import (
    ContractError,
    DependencyResolved,
    DependentAdded,
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskProgressed,
    TaskReady,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.runtime.messages import load_event
from workers.store.base import EventStore, RecordedEvent
from workers.tasks.state import Task, evolve, stream_of


def describe(event: Event) -> str:
    """One line a person reads: what happened, and why where the history says."""
    match event:
        case TaskSubmitted():
            parts = [
                f"submitted by {event.submitted_by}: capability {event.capability!r}, "
                f"priority {event.priority}, up to {event.max_attempts} attempts, "
                f"timeout {event.timeout_s:g}s"
            ]
            if event.depends_on:
                parts.append(f"depends on {', '.join(map(str, event.depends_on))}")
            if event.resources:
                parts.append(f"needs {', '.join(event.resources)}")
            parts.append("ready" if event.ready else "waiting for its dependencies")
            return "; ".join(parts)
        case DependentAdded():
            return f"task {event.dependent} waits on this one"
        case DependencyResolved():
            return f"dependency {event.dependency} succeeded"
        case TaskReady():
            return "every dependency succeeded: ready to place"
        case TaskAssigned():
            leases = f", leases {len(event.leases)}" if event.leases else ""
            return (
                f"placed on {event.agent_id} (attempt {event.attempt}, fencing token "
                f"{event.fencing_token}{leases}): {event.reason}"
            )
        case TaskStarted():
            return f"started on {event.agent_id} (attempt {event.attempt}); deadline {_at(event)}"
        case TaskProgressed():
            note = f": {event.message}" if event.message else ""
            return f"progress {event.progress:.0%}{note}"
        case TaskSucceeded():
            return f"succeeded on {event.agent_id} (attempt {event.attempt})"
        case TaskFailed():
            where = f" on {event.agent_id}" if event.agent_id else ""
            final = "" if event.retryable else " (not retryable)"
            return (
                f"attempt {event.attempt} failed{where}: {event.error} [{event.error_type}]{final}"
            )
        case TaskRetryScheduled():
            return (
                f"retry as attempt {event.attempt} in {event.delay_s:g}s, because: {event.reason}"
            )
        case TaskRequeued():
            return f"back to pending as attempt {event.attempt}: {event.reason}"
        case TaskCancelled():
            stop = f"; {event.agent_id} told to stop" if event.agent_id else ""
            return f"cancelled: {event.reason}{stop}"
        case TaskDead():
            return f"dead after attempt {event.attempt}: {event.error}"
    return event.type_name()


def _at(event: TaskStarted) -> str:
    return event.deadline.astimezone(UTC).isoformat(timespec="milliseconds")


def timeline_entry(record: RecordedEvent, event: Event | None = None) -> dict[str, Any]:
    """``event``: the record already decoded (decoded here if not given)."""
    return {
        "at": record.recorded_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "version": record.version,
        "type": record.type,
        "summary": describe(event if event is not None else load_event(record)),
        "data": record.data,
        "worker": record.metadata.get("worker"),
    }


def unreadable_entry(record: RecordedEvent, error: Exception) -> dict[str, Any]:
    """A record this code cannot decode (a newer release's type or version, a corrupted
    row), shown where it stands rather than hiding the rest of the history."""
    return {
        "at": record.recorded_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "version": record.version,
        "position": record.position,
        "type": record.type,
        "summary": (
            f"unreadable at position {record.position} (stored as {record.type!r}, "
            f"schema version {record.schema_version}): {error}"
        ),
        "data": record.data,
        "worker": record.metadata.get("worker"),
        "unreadable": True,
        "error": str(error),
    }


@dataclass(frozen=True, slots=True)
class Timeline:
    """A task's stream as far as this code can read it.

    ``task`` is the fold of the readable events only: with ``unreadable`` above 0 it
    may miss what the others changed, so whoever shows it says so."""

    task: Task
    entries: list[dict[str, Any]]
    unreadable: int

    @property
    def incomplete(self) -> bool:
        return self.unreadable > 0


async def read_timeline(store: EventStore, task_id: UUID) -> Timeline:
    """A task's state and its history, entry by entry; a record that cannot be decoded
    becomes an entry that says so instead of failing the whole answer (``rally task show``,
    the dashboard)."""
    records = await store.read(stream_of(task_id))
    task = Task(task_id)
    entries: list[dict[str, Any]] = []
    unreadable = 0
    for record in records:
        try:
            event = load_event(record)
        except (ContractError, TypeError) as exc:  # TypeError: a command stored as an event
            unreadable += 1
            entries.append(unreadable_entry(record, exc))
            # the stream's version still counts the record, as the store does
            task = replace(task, version=record.version)
            continue
        task = evolve(task, event)
        entries.append(timeline_entry(record, event))
    return Timeline(task, entries, unreadable)


def task_row(task: Task) -> dict[str, Any]:
    spec = task.spec
    return {
        "task_id": str(task.task_id),
        "state": task.state,
        "capability": spec.capability if spec else None,
        "priority": spec.priority if spec else None,
        "attempt": task.attempt,
        "agent_id": task.agent_id,
        "error": task.reason if task.state in ("cancelled", "dead") else task.last_error,
    }


async def all_tasks(store: EventStore, page: int = 1000) -> list[Task]:
    """Every submitted task's current state, folded from the whole history.

    Its cost grows with the history's age: views ask the tasks read model instead
    (``workers.readmodels.task_queries``: ``list_tasks``, ``count_by_state``,
    ``active_by_agent``). Kept until its last callers move."""
    tasks: dict[UUID, Task] = {}
    position = 0
    while True:
        records = await store.read_all(position, page, stream_prefix="task-")
        for record in records:
            task_id = UUID(record.stream.removeprefix("task-"))
            tasks[task_id] = evolve(tasks.get(task_id) or Task(task_id), load_event(record))
            position = record.position
        if len(records) < page:
            break
    return [t for t in tasks.values() if t.submitted]
