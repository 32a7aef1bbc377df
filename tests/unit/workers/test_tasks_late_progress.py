"""Progress reports that arrive after their attempt ended: acknowledged and ignored quietly.

An agent sends progress, then success; the broker may deliver them out of order
(across bundles, or a retried progress report). The late progress must record
nothing and say so only at debug level. Other stale reports (a late final report
from a replaced holder, a report from an agent that does not hold the attempt, a
token never issued) stay worth a warning.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from contracts import (
    Backoff,
    ReportTaskFailed,
    ReportTaskProgress,
    ReportTaskStarted,
    ReportTaskSucceeded,
    SubmitTask,
    TaskAssigned,
    TaskRequeued,
)
from workers.runtime.clock import ManualClock
from workers.tasks import handlers
from workers.tasks.domain import Report, decide, stale, stale_level
from workers.tasks.handlers import TaskManager
from workers.tasks.state import Task, evolve, fold
from workers.tasks.submit import Submitter, decide_submit

clock = ManualClock()


def pending(max_attempts: int = 3) -> Task:
    cmd = SubmitTask(capability="c", max_attempts=max_attempts, backoff=Backoff(initial_s=1))
    d = decide_submit(cmd, Submitter("alice"), Task(cmd.task_id), {}, None, clock.now(), 1 << 20)
    return fold(cmd.task_id, list(d.appends[0].events))


def assigned(task: Task, agent: str = "a") -> Task:
    return evolve(
        task,
        TaskAssigned(
            task_id=task.task_id,
            agent_id=agent,
            attempt=task.next_attempt,
            fencing_token=task.version + 1,
            reason="r",
        ),
    )


def report(task: Task, cls: type[Any], **kw: Any) -> Any:
    fields: dict[str, Any] = {
        "task_id": task.task_id,
        "agent_id": task.agent_id,
        "attempt": task.attempt,
        "fencing_token": task.fencing_token,
    }
    return cls(**(fields | kw))


def act(task: Task, cmd: Report) -> Task:
    for event in decide(task, cmd, clock.now()):
        task = evolve(task, event)
    return task


def progress(task: Task, **kw: Any) -> ReportTaskProgress:
    return report(task, ReportTaskProgress, progress=0.5, **kw)  # type: ignore[no-any-return]


def quietly_ignored(task: Task, cmd: Report) -> bool:
    return stale(task, cmd) is not None and decide(task, cmd, clock.now()) == []


def test_progress_overtaken_by_its_own_success_is_ignored_at_debug() -> None:
    task = assigned(pending())
    task = act(task, report(task, ReportTaskStarted))
    late = progress(task)
    done = act(task, report(task, ReportTaskSucceeded, result=1))
    assert done.state == "succeeded"
    assert quietly_ignored(done, late)
    assert stale_level(done, late) == "debug"


def test_progress_after_a_failure_or_a_time_out_requeue_is_ignored_at_debug() -> None:
    task = assigned(pending())
    late = progress(task)
    failed = act(task, report(task, ReportTaskFailed, error="boom"))
    assert failed.state == "failed"
    assert stale_level(failed, late) == "debug"
    requeued = evolve(
        failed, TaskRequeued(task_id=task.task_id, attempt=2, reason="retry backoff over")
    )
    assert requeued.state == "pending"
    assert quietly_ignored(requeued, late)
    assert stale_level(requeued, late) == "debug"


def test_progress_of_an_older_attempt_is_ignored_at_debug() -> None:
    first = assigned(pending(), "a")
    late = progress(first)
    failed = act(first, report(first, ReportTaskFailed, error="boom"))
    second = assigned(
        evolve(failed, TaskRequeued(task_id=first.task_id, attempt=2, reason="r")), "b"
    )
    running = act(second, report(second, ReportTaskStarted))
    assert (running.state, running.attempt) == ("running", 2)
    assert quietly_ignored(running, late)
    assert stale_level(running, late) == "debug"
    ended = act(running, report(running, ReportTaskSucceeded, result=1))
    assert stale_level(ended, late) == "debug"


def test_other_stale_reports_are_still_worth_saying() -> None:
    first = assigned(pending(), "a")
    old_success = report(first, ReportTaskSucceeded, result=1)
    failed = act(first, report(first, ReportTaskFailed, error="boom"))
    second = assigned(evolve(failed, TaskRequeued(task_id=first.task_id, attempt=2, reason="r")))
    # a replaced holder still finishing its work: a warning, as before
    assert stale_level(second, old_success) == "warning"
    # the current attempt's own start report after its success (replicas race): info, as before
    done = act(second, report(second, ReportTaskSucceeded, result=1))
    assert stale_level(done, report(second, ReportTaskStarted)) == "info"
    # an agent that never held the attempt, a token never issued, a later attempt: warnings
    assert stale_level(second, progress(second, agent_id="intruder")) == "warning"
    assert stale_level(done, progress(done, agent_id="intruder")) == "warning"
    assert stale_level(done, progress(done, fencing_token=done.version + 5)) == "warning"
    assert stale_level(done, progress(done, attempt=3)) == "warning"
    # progress on a task never submitted: a warning
    unknown = Task(first.task_id)
    assert stale_level(unknown, progress(first)) == "warning"


def test_the_task_manager_logs_a_late_progress_at_debug_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the module's logger may already be cached at the level an earlier test configured:
    # hand it one that keeps every level, captured
    logs = LogCapture()
    logger = structlog.wrap_logger(
        None, processors=[logs], wrapper_class=structlog.make_filtering_bound_logger(0)
    )
    monkeypatch.setattr(handlers, "log", logger)
    first = assigned(pending(), "a")
    late = progress(first)
    done = act(first, report(first, ReportTaskSucceeded, result=1))
    lost = act(first, report(first, ReportTaskFailed, error="lost"))
    older = assigned(evolve(lost, TaskRequeued(task_id=first.task_id, attempt=2, reason="r")), "b")
    old_success = report(first, ReportTaskSucceeded, result=1)
    for task, cmd in ((done, late), (older, late), (older, old_success)):
        why = stale(task, cmd)
        assert why is not None
        TaskManager._log_stale(task, cmd, why)
    assert [(e["event"], e["log_level"]) for e in logs.entries] == [
        ("task.stale_report", "debug"),
        ("task.stale_report", "debug"),
        ("task.stale_report", "warning"),
    ]
