"""Submit decisions: who owns a task, where its notices go, and which submits are refused.

Identity comes from the broker, never from the envelope: a plain user owns what it
submits and hears about it in its own inbox (an anonymous sender in none),
whatever ``sender`` or ``reply_to`` say. A service user may act for anyone, so
its ``sender`` and ``reply_to`` are honoured (the demo and CLI clients share the
``guest`` service user and tell themselves apart by them).

A submit that names an existing task id or idempotency key is a duplicate only
if the same owner sent the same spec; anything else is refused (``conflict``)
and nothing is recorded, so no one hears another task's outcome. A dependency
must be recorded before its dependent: a dependent naming an unknown task is
recorded cancelled, so no stream is written for a task nobody submitted and no
cycle can form (a task's dependencies are fixed when it is recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID

from contracts import (
    DependencyResolved,
    DependentAdded,
    Event,
    SubmitTask,
    TaskAccepted,
    TaskCancelled,
    TaskKeyClaimed,
    TaskRefused,
    TaskSubmitted,
)
from workers.runtime.messages import Effect
from workers.tasks.domain import effects, outcome_of
from workers.tasks.sizes import assignment_bytes
from workers.tasks.state import Task, evolve, key_stream, stream_of

ANONYMOUS = "anonymous"  # submitted_by of a task whose sender the broker did not vouch for
# what makes two submits the same task (reply_to is where to answer, not what to run)
SPEC_FIELDS = (
    "capability",
    "payload",
    "priority",
    "timeout_s",
    "max_attempts",
    "backoff",
    "depends_on",
    "resources",
    "pending_timeout_s",
)


@dataclass(frozen=True, slots=True)
class Submitter:
    """Who a command acts for, as the broker vouched for it (``Incoming.principal``)."""

    principal: str | None
    service: bool = False
    sender: str = ""  # the envelope's sender: a claim, believed only from a service user

    @property
    def name(self) -> str:
        """Who the history says submitted it."""
        if self.service and self.sender:
            return self.sender
        return self.principal or ANONYMOUS

    def inbox(self, reply_to: str | None) -> str | None:
        """Where this submitter hears back: its own broker user's inbox, or none."""
        if self.service:
            return reply_to or self.sender or None
        return self.principal

    def may_act_for(self, owner: str | None) -> bool:
        """Whether it may cancel, repeat or hear about a task ``owner`` submitted."""
        return self.service or (self.principal is not None and self.principal == owner)


@dataclass(frozen=True, slots=True)
class Append:
    stream: str
    expected_version: int | None
    events: list[Event]


@dataclass(slots=True)
class SubmitDecision:
    appends: list[Append] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    duplicate_of: UUID | None = None
    refused: TaskRefused | None = None  # nothing recorded; ``effects`` tells the submitter
    unknown_dependency: UUID | None = None  # the recorded decision cancels it for this


def conflict(cmd: SubmitTask, by: Submitter, task: Task, key_owner: Task | None) -> str | None:
    """Why this submit is not a repeat of the task its id or key names (None: it is)."""
    existing = key_owner if key_owner is not None else task
    assert existing.spec is not None
    if key_owner is not None and task.submitted and task.task_id != key_owner.task_id:
        return (
            f"task id {cmd.task_id} and idempotency key {cmd.idempotency_key!r} "
            f"name different tasks (the key is {key_owner.task_id}'s)"
        )
    if not by.may_act_for(existing.owner):
        return f"task {existing.task_id} belongs to another submitter"
    if existing.spec.idempotency_key != cmd.idempotency_key:
        return f"task {existing.task_id} was submitted with another idempotency key"
    spec, differs = existing.spec, []
    for name in SPEC_FIELDS:
        if getattr(spec, name) != getattr(cmd, name):
            differs.append(name)
    if differs:
        return f"task {existing.task_id} was submitted with another {', '.join(differs)}"
    return None


def decide_submit(
    cmd: SubmitTask,
    by: Submitter,
    task: Task,
    deps: dict[UUID, Task],
    key_owner: Task | None,
    now: datetime,
    max_message_bytes: int,
) -> SubmitDecision:
    """Record a new task; answer a true duplicate with the task that exists; refuse the rest.

    ``deps`` holds the current state of each dependency up to the first unknown
    one, ``key_owner`` the task that already claimed the idempotency key (None if
    the key is free).
    """
    inbox = by.inbox(cmd.reply_to)
    if key_owner is not None or task.submitted:
        why = conflict(cmd, by, task, key_owner)
        if why is not None:
            return _refuse(cmd, inbox, "conflict", why)
        existing = key_owner if key_owner is not None else task
        notice = TaskAccepted(task_id=cmd.task_id, duplicate_of=existing.task_id)
        answers = [Effect(notice, to=inbox)] if inbox else []
        if existing.terminal and inbox:  # the first submit's inbox may be gone: tell this one
            answers.append(Effect(outcome_of(existing), to=inbox))
        return SubmitDecision(effects=answers, duplicate_of=existing.task_id)

    size = assignment_bytes(cmd)
    if size > max_message_bytes:
        detail = f"its AssignTask would be {size} bytes, over the message limit of "
        return _refuse(cmd, inbox, "too_large", detail + str(max_message_bytes))

    decision = SubmitDecision()
    resolved: list[UUID] = []
    waiting: list[Task] = []
    broken: str | None = None
    for dep_id in dict.fromkeys(cmd.depends_on):
        dep = deps.get(dep_id)
        if dep_id == cmd.task_id:
            broken = "a task cannot depend on itself"
        elif dep is None or not dep.submitted:
            broken = f"depends on unknown task {dep_id}"
            decision.unknown_dependency = dep_id
        elif dep.state == "succeeded":
            resolved.append(dep_id)
        elif dep.terminal:
            broken = f"dependency {dep_id} ended {dep.state}: {dep.reason}"
        else:
            waiting.append(dep)
        if broken:
            break

    submitted = TaskSubmitted(
        task_id=cmd.task_id,
        capability=cmd.capability,
        payload=cmd.payload,
        priority=cmd.priority,
        idempotency_key=cmd.idempotency_key,
        timeout_s=cmd.timeout_s,
        max_attempts=cmd.max_attempts,
        backoff=cmd.backoff,
        depends_on=cmd.depends_on,
        resources=cmd.resources,
        submitted_by=by.name,
        reply_to=inbox,  # decided here from identity: see Task.inbox
        ready=not waiting and broken is None,
        pending_timeout_s=cmd.pending_timeout_s,
        submitted_at=now,
        owner=by.principal,
    )
    events: list[Event] = [submitted]
    events += [DependencyResolved(task_id=cmd.task_id, dependency=d) for d in resolved]
    if broken is not None:
        events.append(TaskCancelled(task_id=cmd.task_id, reason=broken))
    else:
        for dep in waiting:
            added = DependentAdded(task_id=dep.task_id, dependent=cmd.task_id)
            decision.appends.append(Append(stream_of(dep.task_id), dep.version, [added]))
    decision.appends.insert(0, Append(stream_of(cmd.task_id), task.version, events))
    if cmd.idempotency_key is not None:
        claim = TaskKeyClaimed(idempotency_key=cmd.idempotency_key, task_id=cmd.task_id)
        decision.appends.append(Append(key_stream(cmd.idempotency_key), 0, [claim]))
    # no TaskAccepted for a new task: a client learns nothing from it (only a duplicate's
    # ``duplicate_of`` changes what it waits for), and nothing is published nobody reads
    after = task
    for event in events:
        after = evolve(after, event)
    decision.effects += effects(task, events, after)
    return decision


def _refuse(
    cmd: SubmitTask, inbox: str | None, reason: Literal["conflict", "too_large"], detail: str
) -> SubmitDecision:
    refused = TaskRefused(task_id=cmd.task_id, reason=reason, detail=detail)
    answers = [Effect(refused, to=inbox)] if inbox else []
    return SubmitDecision(effects=answers, refused=refused)
