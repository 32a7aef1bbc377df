"""The task aggregate (stream ``task-<uuid>``) and how each recorded fact changes it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from pydantic import JsonValue

from contracts import (
    DEFAULT_PENDING_TIMEOUT_S,
    Backoff,
    DependencyResolved,
    DependentAdded,
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskReady,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
)

ACTIVE = frozenset({"assigned", "running"})  # an agent holds the current attempt
TERMINAL = frozenset({"succeeded", "cancelled", "dead"})


STREAM_PREFIX = "task-"  # the one place a task stream's name is made


def stream_of(task_id: UUID) -> str:
    return f"{STREAM_PREFIX}{task_id}"


def task_of(stream: str) -> UUID | None:
    """The task id of a ``task-*`` stream name, None for any other stream."""
    if not stream.startswith(STREAM_PREFIX):
        return None
    try:
        return UUID(stream[len(STREAM_PREFIX) :])
    except ValueError:
        return None


def key_stream(idempotency_key: str) -> str:
    return "taskkey-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Task:
    task_id: UUID
    version: int = 0
    # None until TaskSubmitted: a stream may first hold DependentAdded from a dependent
    # submitted before it (a forward reference).
    state: str | None = None
    spec: TaskSubmitted | None = None
    ready: bool = False
    resolved: frozenset[UUID] = frozenset()
    dependents: tuple[UUID, ...] = ()
    attempt: int = 0  # of the latest assignment
    next_attempt: int = 1  # the attempt the next assignment runs
    agent_id: str | None = None
    fencing_token: int | None = None
    deadline: datetime | None = None
    last_error: str | None = None
    result: JsonValue = None
    reason: str | None = None  # why it was cancelled, or the error it died of

    @property
    def submitted(self) -> bool:
        return self.spec is not None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def waiting_on(self) -> frozenset[UUID]:
        if self.spec is None:
            return frozenset()
        return frozenset(self.spec.depends_on) - self.resolved

    @property
    def max_attempts(self) -> int:
        return self.spec.max_attempts if self.spec else 1

    @property
    def timeout_s(self) -> float:
        return self.spec.timeout_s if self.spec else 300.0

    @property
    def backoff(self) -> Backoff:
        return self.spec.backoff if self.spec else Backoff()

    @property
    def owner(self) -> str | None:
        """The broker-vouched submitter (None: anonymous, or recorded before owners)."""
        return self.spec.owner if self.spec else None

    @property
    def submitted_at(self) -> datetime | None:
        return self.spec.submitted_at if self.spec else None

    @property
    def pending_timeout_s(self) -> float:
        return self.spec.pending_timeout_s if self.spec else DEFAULT_PENDING_TIMEOUT_S

    @property
    def inbox(self) -> str | None:
        """Where the outcome goes: the inbox ``decide_submit`` chose from the submitter's
        broker identity and recorded as ``reply_to`` (so a plain user's envelope fields
        never pick it)."""
        if self.spec is None:
            return None
        if self.spec.submitted_at is None:  # recorded before: reply_to was the sender's word
            return self.spec.reply_to or self.spec.submitted_by
        return self.spec.reply_to


def evolve(task: Task, event: Event) -> Task:
    """The task after one more event of its stream (one copy: folds run per message)."""
    version = task.version + 1
    match event:
        case TaskSubmitted():
            return replace(task, version=version, state="pending", spec=event, ready=event.ready)
        case DependentAdded():
            return replace(task, version=version, dependents=(*task.dependents, event.dependent))
        case DependencyResolved():
            return replace(task, version=version, resolved=task.resolved | {event.dependency})
        case TaskReady():
            return replace(task, version=version, ready=True)
        case TaskAssigned():
            return replace(
                task,
                version=version,
                state="assigned",
                attempt=event.attempt,
                agent_id=event.agent_id,
                fencing_token=event.fencing_token,
                deadline=None,
            )
        case TaskStarted():
            return replace(task, version=version, state="running", deadline=event.deadline)
        case TaskSucceeded():
            return replace(task, version=version, state="succeeded", result=event.result)
        case TaskFailed():
            return replace(task, version=version, state="failed", last_error=event.error)
        case TaskRetryScheduled():
            return replace(task, version=version, next_attempt=event.attempt)
        case TaskRequeued():
            return replace(
                task,
                version=version,
                state="pending",
                next_attempt=event.attempt,
                agent_id=None,
                fencing_token=None,
            )
        case TaskCancelled():
            return replace(task, version=version, state="cancelled", reason=event.reason)
        case TaskDead():
            return replace(task, version=version, state="dead", reason=event.error)
    return replace(task, version=version)


def fold(task_id: UUID, events: list[Event]) -> Task:
    task = Task(task_id)
    for event in events:
        task = evolve(task, event)
    return task
