"""Task decisions: pure ``decide`` (state + command + now → events) and their side effects.

Attempts: an assignment runs ``next_attempt``. A failure, a time-out or a lost
agent uses up the attempt (the next one is attempt + 1; past ``max_attempts``
the task is dead). An agent refusing an assignment (``RejectAssignment``) does
not: the task goes back to pending with the same attempt number; the fencing
token (the task stream version of the assignment) still changes, so reports
for the refused assignment stay stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from contracts import (
    DEFAULT_MAX_BYTES,
    CancelTask,
    DependencyResolved,
    Event,
    RejectAssignment,
    ReportTaskFailed,
    ReportTaskProgress,
    ReportTaskStarted,
    ReportTaskSucceeded,
    ResolveDependency,
    StopTask,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskOutcome,
    TaskProgressed,
    TaskReady,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSucceeded,
    TaskTimerDue,
)
from workers.runtime.messages import Effect
from workers.tasks.sizes import outcome_bytes
from workers.tasks.state import ACTIVE, Task, stream_of

Report = (
    ReportTaskStarted
    | ReportTaskProgress
    | ReportTaskSucceeded
    | ReportTaskFailed
    | RejectAssignment
)
Command = Report | CancelTask | ResolveDependency | TaskTimerDue

_COMPACT = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps builds one per call

# A timer may reach us a hair before the deadline it was set for (two clocks).
TIMER_SLACK_S = 0.05


@dataclass(frozen=True, slots=True)
class Limits:
    max_result_bytes: int = 1024 * 1024
    max_message_bytes: int = DEFAULT_MAX_BYTES  # the broker's (BrokerSettings)


def refuse_cancel(task: Task, principal: str | None, service: bool) -> str | None:
    """Why this sender may not cancel the task (None: it may, or there is nothing to cancel).

    Only the task's owner (its broker-vouched submitter) or a service user may.
    """
    if service or not task.submitted or (principal is not None and principal == task.owner):
        return None
    who = f"broker user {principal!r}" if principal else "an anonymous sender"
    return f"{who} may not cancel task {task.task_id}: only its submitter or a service user may"


def stale(task: Task, report: Report) -> str | None:
    """Why a report is not about the current attempt (None: it is current)."""
    if not task.submitted:
        return "unknown task"
    if task.state not in ACTIVE:
        return f"task is {task.state}"
    if report.attempt != task.attempt or report.fencing_token != task.fencing_token:
        return (
            f"attempt {report.attempt}/token {report.fencing_token} is not the current "
            f"attempt {task.attempt}/token {task.fencing_token}"
        )
    if report.agent_id != task.agent_id:
        return f"agent {report.agent_id} does not hold it ({task.agent_id} does)"
    return None


def ended_attempt(task: Task, report: Report) -> bool:
    """The report is about an assignment this task has finished with: it ended, or a
    later assignment replaced it. Not one never issued (a later attempt, a token past
    the stream's version) nor the current one from an agent that does not hold it."""
    if not task.submitted or report.attempt > task.attempt or report.fencing_token > task.version:
        return False
    if report.attempt == task.attempt and report.fencing_token == task.fencing_token:
        return task.state not in ACTIVE and report.agent_id == task.agent_id
    return True


StaleLevel = Literal["debug", "info", "warning"]


def stale_level(task: Task, report: Report) -> StaleLevel:
    """How loudly to log a stale report (``stale`` says why it is one)."""
    if isinstance(report, ReportTaskProgress) and ended_attempt(task, report):
        # progress sent before its final report, delivered after it (bundles, retries),
        # or from an attempt already replaced: routine, and it changes nothing
        return "debug"
    current = report.attempt == task.attempt and report.fencing_token == task.fencing_token
    if current and report.agent_id == task.agent_id:
        return "info"  # the current attempt's own report after a later one (replicas race)
    return "warning"  # a stale holder still at work, or a report nobody was given


def decide(task: Task, command: Command, now: datetime, limits: Limits = Limits()) -> list[Event]:
    match command:
        case CancelTask():
            return _cancel(task, command.reason)
        case ResolveDependency():
            return _resolve(task, command)
        case TaskTimerDue():
            return _timer(task, command, now)
    if stale(task, command) is not None:
        return []  # a late report from a lost or replaced holder: no effect
    tid, agent, attempt = task.task_id, command.agent_id, command.attempt
    match command:
        case ReportTaskStarted():
            if task.state == "running":
                return []
            deadline = now + timedelta(seconds=task.timeout_s)
            return [TaskStarted(task_id=tid, agent_id=agent, attempt=attempt, deadline=deadline)]
        case ReportTaskProgress():
            return [
                TaskProgressed(
                    task_id=tid,
                    agent_id=agent,
                    attempt=attempt,
                    progress=command.progress,
                    message=command.message,
                )
            ]
        case ReportTaskSucceeded():
            started = _implied_start(task, agent, now)
            error = _result_too_large(task, command, limits)
            if error is not None:
                # the same work would produce the same result: retrying cannot help
                return started + _failed(task, now, agent, error, "ResultTooLarge", retryable=False)
            return [
                *started,
                TaskSucceeded(task_id=tid, agent_id=agent, attempt=attempt, result=command.result),
            ]
        case ReportTaskFailed():
            return _implied_start(task, agent, now) + _failed(
                task, now, agent, command.error, command.error_type, command.retryable
            )
        case RejectAssignment():
            return [
                TaskRequeued(
                    task_id=tid,
                    attempt=task.attempt,
                    agent_id=agent,
                    reason=f"rejected by {agent}: {command.reason}",
                )
            ]
    raise TypeError(f"task manager cannot decide {type(command).__name__}")


def _result_too_large(task: Task, report: ReportTaskSucceeded, limits: Limits) -> str | None:
    size = len(_COMPACT.encode(report.result).encode())
    if size > limits.max_result_bytes:
        return f"result too large: {size} bytes > {limits.max_result_bytes}"
    # the outcome notice carries the result re-encoded in an envelope: it must fit too
    size = outcome_bytes(task.task_id, task.attempt, report.result)
    if size > limits.max_message_bytes:
        limit = limits.max_message_bytes
        return f"result too large: its TaskOutcome would be {size} bytes > the limit {limit}"
    return None


def _implied_start(task: Task, agent: str, now: datetime) -> list[Event]:
    """A final report for an attempt not yet started says it started, too.

    An agent whose task is done within moments sends only the final report (the
    start report would arrive with it); it may also overtake a start report that
    needed a retry. Either way the history keeps its shape: started, then the end.
    """
    if task.state != "assigned":
        return []
    deadline = now + timedelta(seconds=task.timeout_s)
    return [
        TaskStarted(task_id=task.task_id, agent_id=agent, attempt=task.attempt, deadline=deadline)
    ]


def _failed(
    task: Task, now: datetime, agent: str | None, error: str, error_type: str, retryable: bool
) -> list[Event]:
    failed = TaskFailed(
        task_id=task.task_id,
        agent_id=agent,
        attempt=task.attempt,
        error=error,
        error_type=error_type,
        retryable=retryable,
    )
    return [failed, *after_failure(task, now, error, retryable=retryable)]


def after_failure(task: Task, now: datetime, error: str, *, retryable: bool = True) -> list[Event]:
    """The retry policy: back off and try again while attempts are left, else dead."""
    if retryable and task.attempt < task.max_attempts:
        delay = task.backoff.delay_for(task.attempt)
        return [
            TaskRetryScheduled(
                task_id=task.task_id,
                attempt=task.attempt + 1,
                delay_s=delay,
                not_before=now + timedelta(seconds=delay),
                reason=error,
            )
        ]
    return [TaskDead(task_id=task.task_id, attempt=task.attempt, error=error)]


def _cancel(task: Task, reason: str) -> list[Event]:
    if not task.submitted or task.terminal:
        return []
    agent = task.agent_id if task.state in ACTIVE else None
    return [TaskCancelled(task_id=task.task_id, reason=reason, agent_id=agent)]


def _resolve(task: Task, cmd: ResolveDependency) -> list[Event]:
    if not task.submitted or task.state != "pending" or cmd.dependency not in task.waiting_on:
        return []
    if cmd.outcome != "succeeded":
        why = f": {cmd.reason}" if cmd.reason else ""
        reason = f"dependency {cmd.dependency} ended {cmd.outcome}{why}"
        return [TaskCancelled(task_id=task.task_id, reason=reason)]
    events: list[Event] = [DependencyResolved(task_id=task.task_id, dependency=cmd.dependency)]
    if task.waiting_on == {cmd.dependency}:
        events.append(TaskReady(task_id=task.task_id))
    return events


def _timer(task: Task, timer: TaskTimerDue, now: datetime) -> list[Event]:
    if timer.timer == "retry":
        if task.state == "failed" and task.next_attempt == timer.attempt:
            return [
                TaskRequeued(
                    task_id=task.task_id,
                    attempt=timer.attempt,
                    reason=f"retry after back-off; attempt {task.attempt} failed: "
                    f"{task.last_error}",
                )
            ]
        return []
    if task.state not in ACTIVE or task.attempt != timer.attempt:
        return []  # the attempt this timer watched is over
    if task.state == "running" and task.deadline is not None:
        if now < task.deadline - timedelta(seconds=TIMER_SLACK_S):
            return []  # the assignment's timer; the start set a later one
        error = f"timed out after {task.timeout_s:g}s"
    else:
        error = f"not started within {task.timeout_s:g}s"
    return _failed(task, now, task.agent_id, error, "Timeout", retryable=True)


# ---- side effects of recorded events ----


def outcome_of(task: Task) -> TaskOutcome:
    assert task.state in ("succeeded", "cancelled", "dead")
    return TaskOutcome(
        task_id=task.task_id,
        state=task.state,  # type: ignore[arg-type]
        attempt=task.attempt,
        result=task.result if task.state == "succeeded" else None,
        error=None if task.state == "succeeded" else task.reason,
    )


def effects(before: Task, events: list[Event], after: Task) -> list[Effect]:
    """The messages the recorded events call for; committed in the same append (outbox).

    Timers are tagged with the task's stream, so the append that ends what they watch
    can take them back before they reach the broker (``timers_to_cancel``).
    """
    out: list[Effect] = []
    before_stream = stream_of(before.task_id)
    for event in events:
        match event:
            case TaskStarted() if after.state == "running" and after.attempt == event.attempt:
                # (a task that also ended in this append needs no time-out)
                timer = TaskTimerDue(task_id=event.task_id, attempt=event.attempt, timer="timeout")
                out.append(Effect(timer, not_before=event.deadline, timer_of=before_stream))
            case TaskRetryScheduled():
                timer = TaskTimerDue(task_id=event.task_id, attempt=event.attempt, timer="retry")
                out.append(Effect(timer, not_before=event.not_before, timer_of=before_stream))
            case TaskCancelled() if event.agent_id is not None:
                stop = StopTask(task_id=event.task_id, attempt=before.attempt, reason=event.reason)
                out.append(Effect(stop, to=event.agent_id))
            case TaskFailed() if event.error_type == "Timeout" and event.agent_id is not None:
                stop = StopTask(task_id=event.task_id, attempt=event.attempt, reason=event.error)
                out.append(Effect(stop, to=event.agent_id))
    if after.terminal and not before.terminal:
        if after.inbox is not None:
            out.append(Effect(outcome_of(after), to=after.inbox))
        outcome = after.state
        for dependent in after.dependents:
            resolve = ResolveDependency(
                task_id=dependent,
                dependency=after.task_id,
                outcome=outcome,  # type: ignore[arg-type]
                reason=after.reason,
            )
            out.append(Effect(resolve))
    return out


def timers_to_cancel(before: Task, after: Task) -> list[str]:
    """The streams whose waiting timers the append from ``before`` to ``after`` makes moot.

    A time-out watches one attempt: once that attempt is over (ended, failed, requeued,
    cancelled) its timer would only fire to be ignored. A timer the same append sets (the
    next retry's) survives: the store cancels only rows written before the append.
    """
    attempt_over = before.state in ACTIVE and after.state not in ACTIVE
    if attempt_over or (after.terminal and not before.terminal):
        return [stream_of(after.task_id)]
    return []


def decide_agent_gone(task: Task, agent_id: str, why: str) -> list[Event]:
    """The agent holding the current attempt was lost (or left without draining).

    The attempt counts: the task goes back to pending as attempt + 1 and is placed
    again at once (no back-off: nothing suggests the task is at fault); with no
    attempt left it fails and is dead.
    """
    if task.state not in ACTIVE or task.agent_id != agent_id:
        return []
    if task.attempt < task.max_attempts:
        return [
            TaskRequeued(
                task_id=task.task_id, attempt=task.attempt + 1, reason=why, agent_id=agent_id
            )
        ]
    failed = TaskFailed(
        task_id=task.task_id,
        agent_id=agent_id,
        attempt=task.attempt,
        error=why,
        error_type="AgentLost",
    )
    return [failed, TaskDead(task_id=task.task_id, attempt=task.attempt, error=why)]


def decide_pending_expired(task: Task, now: datetime, why: str) -> list[Event]:
    """A task still pending ``pending_timeout_s`` after its submit ends dead, saying why.

    ``why`` is the reason it waited, in words (the placer knows it: no agent with
    the capability, a resource held, its dependencies...). A task recorded before
    submit times were (no ``submitted_at``) never expires here.
    """
    if task.state != "pending" or task.submitted_at is None:
        return []
    limit = task.pending_timeout_s
    if now < task.submitted_at + timedelta(seconds=limit):
        return []
    error = f"pending for more than {limit:g}s: {why}"
    return [TaskDead(task_id=task.task_id, attempt=task.attempt, error=error)]
