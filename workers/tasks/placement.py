"""What the allocator may do to a task stream, decided here (pure, no I/O).

The allocator appends a task's assignment in the same transaction as the
leases it takes, but the task aggregate belongs to ``workers/tasks``: these
functions build every task event and effect the allocator records — the
assignment with its fencing token and notice, the end of a task whose
assignment cannot be delivered, the time-out of an assignment never started
— so the rules of a task stream live in one package.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from contracts import (
    AssignTask,
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskSucceeded,
    TaskTimerDue,
)
from workers.runtime.messages import Effect
from workers.tasks.domain import (
    decide,
    decide_agent_gone,
    decide_pending_expired,
    effects,
    timers_to_cancel,
)
from workers.tasks.state import Task, evolve, stream_of, task_of

__all__ = [
    "ENDING",
    "Assignment",
    "assign",
    "decide_agent_gone",
    "decide_not_started",
    "decide_pending_expired",
    "decide_undeliverable",
    "effects_of",
    "not_started_by",
    "placeable",
    "stream_of",
    "task_of",
]

# The recorded types after which a task is over: a reader that keeps only open tasks
# drops the task on these without validating their payload (a result may be large).
ENDING = frozenset(t.type_name() for t in (TaskSucceeded, TaskCancelled, TaskDead))


def placeable(task: Task) -> bool:
    """Pending, submitted and ready: it may be assigned now."""
    return task.state == "pending" and task.ready and task.spec is not None


@dataclass(frozen=True, slots=True)
class Assignment:
    """The events to append to ``stream`` at ``expected_version``, and their effects."""

    stream: str
    expected_version: int
    events: list[Event]
    effects: list[Effect]
    fencing_token: int


def assign(
    task: Task,
    agent_id: str,
    *,
    reason: str,
    leases: tuple[UUID, ...] = (),
    correlation_id: UUID | None = None,
) -> Assignment:
    """Assign the next attempt of a placeable task to ``agent_id``.

    The fencing token is the task stream version the ``TaskAssigned`` is recorded
    at, so it grows with every assignment and a stale holder's reports are known.
    No watchdog timer is written: an attempt never started is timed out by
    :func:`decide_not_started`, asked by whoever watches assignments (the allocator).
    """
    if not placeable(task) or task.spec is None:
        raise ValueError(f"task {task.task_id} is {task.state}, not placeable")
    token = task.version + 1
    attempt = task.next_attempt
    assigned = TaskAssigned(
        task_id=task.task_id,
        agent_id=agent_id,
        attempt=attempt,
        fencing_token=token,
        reason=reason,
        leases=leases,
    )
    notice = AssignTask(
        task_id=task.task_id,
        capability=task.spec.capability,
        payload=task.spec.payload,
        attempt=attempt,
        fencing_token=token,
        timeout_s=task.timeout_s,
        leases=leases,
    )
    return Assignment(
        stream=stream_of(task.task_id),
        expected_version=task.version,
        events=[assigned],
        effects=[Effect(notice, to=agent_id, correlation_id=correlation_id)],
        fencing_token=token,
    )


def decide_undeliverable(task: Task, why: str) -> list[Event]:
    """Its assignment cannot be sent (too large once encoded): no agent can ever run it.

    It ends dead at once with the reason; retrying could only fail the same way.
    """
    if task.state != "pending":
        return []
    return [
        TaskDead(
            task_id=task.task_id, attempt=task.attempt, error=f"assignment undeliverable: {why}"
        )
    ]


def not_started_by(task: Task, assigned_at: datetime) -> datetime | None:
    """When the current assignment, recorded at ``assigned_at``, times out if never started."""
    if task.state != "assigned":
        return None
    return assigned_at + timedelta(seconds=task.timeout_s)


def decide_not_started(task: Task, assigned_at: datetime, now: datetime) -> list[Event]:
    """The current assignment was not started within ``timeout_s``: the attempt fails.

    The same rule as the task manager's time-out timer (retry with back-off, or dead).
    """
    deadline = not_started_by(task, assigned_at)
    if deadline is None or now < deadline:
        return []
    timer = TaskTimerDue(task_id=task.task_id, attempt=task.attempt, timer="timeout")
    return decide(task, timer, now)


def effects_of(task: Task, events: list[Event]) -> list[Effect]:
    """The effects of appending ``events`` to ``task`` (outcome, stop, retry timer...)."""
    after = task
    for event in events:
        after = evolve(after, event)
    return effects(task, events, after)


def cancels_of(task: Task, events: list[Event]) -> list[str]:
    """The streams whose waiting timers appending ``events`` to ``task`` makes moot."""
    after = task
    for event in events:
        after = evolve(after, event)
    return timers_to_cancel(task, after)
