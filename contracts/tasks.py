"""Task lifecycle messages: submit, cancel, the agent's reports, timers, and the recorded facts.

Lifecycle: pending → assigned → running → succeeded | failed | cancelled | dead.
A failed attempt with attempts left goes back to pending after its back-off.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from contracts.base import Command, Event, Notice
from contracts.fields import AgentId, Attempt, Capability, FencingToken, ResourceName, Seconds

TaskState = Literal["pending", "assigned", "running", "succeeded", "failed", "cancelled", "dead"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "cancelled", "dead"})
DEFAULT_PENDING_TIMEOUT_S = 24 * 3600.0


class Backoff(BaseModel):
    """Exponential back-off between attempts: initial × factor^(n-1), capped at max."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_s: float = Field(default=1.0, ge=0, le=3600)
    factor: float = Field(default=2.0, ge=1, le=10)
    max_s: float = Field(default=60.0, ge=0, le=24 * 3600)

    def delay_for(self, failed_attempt: int) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, failed_attempt - 1))


class SubmitTask(Command):
    route: ClassVar[str | None] = "tasks"

    task_id: UUID = Field(default_factory=uuid4)
    capability: Capability
    payload: JsonValue = None
    priority: int = Field(default=0, ge=-1000, le=1000, description="higher runs first")
    idempotency_key: str | None = Field(default=None, max_length=256)
    timeout_s: Seconds = 300.0
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Backoff = Field(default_factory=Backoff)
    depends_on: tuple[UUID, ...] = Field(default=(), max_length=1000)
    resources: tuple[ResourceName, ...] = Field(default=(), max_length=16)
    reply_to: str | None = Field(
        default=None,
        max_length=200,
        description="inbox that hears the outcome; honoured only from a service user",
    )
    pending_timeout_s: float = Field(
        default=DEFAULT_PENDING_TIMEOUT_S,
        gt=0,
        le=365 * 24 * 3600,
        description="ends the task dead if it is still pending this long after submit",
    )


class CancelTask(Command):
    route: ClassVar[str | None] = "tasks"

    task_id: UUID
    reason: str = Field(default="cancelled by request", max_length=1000)


class _AgentReport(Command):
    """What every report from the agent running an attempt carries."""

    abstract: ClassVar[bool] = True
    route: ClassVar[str | None] = "tasks"

    task_id: UUID
    agent_id: AgentId
    attempt: Attempt
    fencing_token: FencingToken


class ReportTaskStarted(_AgentReport):
    pass


class ReportTaskProgress(_AgentReport):
    progress: float = Field(ge=0, le=1)
    message: str | None = Field(default=None, max_length=2000)


class ReportTaskSucceeded(_AgentReport):
    result: JsonValue = None


class ReportTaskFailed(_AgentReport):
    error: str = Field(max_length=10_000)
    error_type: str = Field(default="Error", max_length=200)
    retryable: bool = True


class RejectAssignment(_AgentReport):
    """The agent cannot take this attempt (full or draining); the task goes back to pending."""

    reason: str = Field(max_length=1000)


class ResolveDependency(Command):
    """A dependency of ``task_id`` reached a terminal state."""

    route: ClassVar[str | None] = "tasks"

    task_id: UUID
    dependency: UUID
    outcome: Literal["succeeded", "cancelled", "dead"]
    reason: str | None = None


class TaskTimerDue(Command):
    """A timer the task manager set itself: a retry back-off ended, or a run time-out passed."""

    route: ClassVar[str | None] = "tasks"

    task_id: UUID
    attempt: Attempt
    timer: Literal["retry", "timeout"]


# ---- recorded facts (stream "task-<task_id>") ----


class TaskSubmitted(Event):
    """A task is recorded. Version 2: ``submitted_at`` is always there (contracts/upcasters.py
    lifts version 1, which had none before owners, from the record's time)."""

    version: ClassVar[int] = 2
    writes: ClassVar[int | None] = 1  # until no replica older than this release is left

    task_id: UUID
    capability: Capability
    payload: JsonValue = None
    priority: int = 0
    idempotency_key: str | None = None
    timeout_s: float = 300.0
    max_attempts: int = 3
    backoff: Backoff = Field(default_factory=Backoff)
    depends_on: tuple[UUID, ...] = ()
    resources: tuple[ResourceName, ...] = ()
    submitted_by: str = "unknown"
    reply_to: str | None = None
    ready: bool = Field(description="true when it has no dependency left to wait for")
    pending_timeout_s: float = DEFAULT_PENDING_TIMEOUT_S
    submitted_at: datetime = Field(
        description="the task manager's clock at submit (version 1: the time it was recorded)"
    )
    owner: str | None = Field(
        default=None,
        description="the broker-vouched submitter that owns the task (None: anonymous)",
    )


class DependentAdded(Event):
    """``dependent`` waits on this task (recorded on the dependency's stream)."""

    task_id: UUID
    dependent: UUID


class TaskReady(Event):
    """Every dependency succeeded; the task can be placed."""

    task_id: UUID


class TaskAssigned(Event):
    task_id: UUID
    agent_id: AgentId
    attempt: Attempt
    fencing_token: FencingToken
    reason: str = Field(description="why this agent: the placement decision in words")
    leases: tuple[UUID, ...] = ()


class TaskStarted(Event):
    task_id: UUID
    agent_id: AgentId
    attempt: Attempt
    deadline: datetime


class TaskProgressed(Event):
    task_id: UUID
    agent_id: AgentId
    attempt: Attempt
    progress: float
    message: str | None = None


class TaskSucceeded(Event):
    task_id: UUID
    agent_id: AgentId
    attempt: Attempt
    result: JsonValue = None


class TaskFailed(Event):
    task_id: UUID
    agent_id: AgentId | None = None
    attempt: Attempt
    error: str
    error_type: str = "Error"
    retryable: bool = True


class TaskRetryScheduled(Event):
    task_id: UUID
    attempt: Attempt = Field(description="the attempt that will run next")
    delay_s: float
    not_before: datetime
    reason: str


class TaskRequeued(Event):
    """Back to pending: a back-off ended, an agent was lost or refused it."""

    task_id: UUID
    attempt: Attempt = Field(description="the attempt that will run next")
    reason: str
    agent_id: AgentId | None = None


class TaskCancelled(Event):
    task_id: UUID
    reason: str
    agent_id: AgentId | None = Field(default=None, description="the agent told to stop, if any")


class TaskDead(Event):
    task_id: UUID
    attempt: int
    error: str


# ---- notices to one agent or client (its inbox) ----


class AssignTask(Notice):
    """Run this attempt. Report with the same attempt and fencing token."""

    task_id: UUID
    capability: Capability
    payload: JsonValue = None
    attempt: Attempt
    fencing_token: FencingToken
    timeout_s: float
    leases: tuple[UUID, ...] = ()


class StopTask(Notice):
    """Stop running this attempt (cancelled, or timed out)."""

    task_id: UUID
    attempt: Attempt
    reason: str


class TaskOutcome(Notice):
    """To the submitter: the task reached a terminal state."""

    task_id: UUID
    state: Literal["succeeded", "cancelled", "dead"]
    attempt: int
    result: JsonValue = None
    error: str | None = None


# ---- added for the task manager (workers/tasks) ----


class DependencyResolved(Event):
    """One dependency of ``task_id`` succeeded (recorded on the dependent's stream).

    Recorded at submit for dependencies already done, and later on each
    ResolveDependency, so the set still awaited can be rebuilt from the history.
    """

    task_id: UUID
    dependency: UUID


class TaskKeyClaimed(Event):
    """An idempotency key is taken by a task (stream "taskkey-<sha256(key)[:32]>")."""

    idempotency_key: str
    task_id: UUID


class TaskAccepted(Notice):
    """To the submitter: the task is recorded. ``duplicate_of`` names the task that a
    repeated idempotency key (or task id) resolved to; no second task was created."""

    task_id: UUID
    duplicate_of: UUID | None = None


class TaskRefused(Notice):
    """To the submitter: the submit was refused and nothing was recorded.

    ``reason``: ``conflict`` (the task id or idempotency key belongs to another
    task, owner or spec) or ``too_large`` (its assignment could not be delivered).
    """

    task_id: UUID
    reason: Literal["conflict", "too_large"]
    detail: str = Field(default="", max_length=2000)
