"""Task decisions, without a broker: fencing, retries, time-outs, results, cancel, deps."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from contracts import (
    Backoff,
    CancelTask,
    Event,
    ReportTaskFailed,
    ReportTaskStarted,
    ReportTaskSucceeded,
    ResolveDependency,
    StopTask,
    SubmitTask,
    TaskAccepted,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskOutcome,
    TaskReady,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSucceeded,
    TaskTimerDue,
)
from workers.runtime.clock import ManualClock
from workers.tasks.domain import (
    Limits,
    decide,
    decide_agent_gone,
    effects,
    stale,
    timers_to_cancel,
)
from workers.tasks.state import Task, evolve, fold, stream_of
from workers.tasks.submit import Submitter, decide_submit

ALICE = Submitter("alice")
LIMIT = 1024 * 1024

clock = ManualClock()


def submitted(**kw: object) -> tuple[Task, SubmitTask]:
    cmd = SubmitTask(capability="c", backoff=Backoff(initial_s=1, factor=2), **kw)  # type: ignore[arg-type]
    d = decide_submit(cmd, ALICE, Task(cmd.task_id), {}, None, clock.now(), LIMIT)
    return fold(cmd.task_id, d.appends[0].events), cmd


def apply(task: Task, events: list[Event]) -> Task:
    for e in events:
        task = evolve(task, e)
    return task


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


def running(task: Task) -> Task:
    return apply(task, decide(task, report(task, ReportTaskStarted), clock.now()))  # type: ignore[arg-type]


def report(task: Task, cls: type, **kw: object) -> object:
    assert task.fencing_token is not None
    return cls(
        task_id=task.task_id,
        agent_id=task.agent_id,
        attempt=task.attempt,
        fencing_token=task.fencing_token,
        **kw,
    )


def types(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_started_sets_deadline_and_timer() -> None:
    task = assigned(submitted(timeout_s=10)[0])
    events = decide(task, report(task, ReportTaskStarted), clock.now())  # type: ignore[arg-type]
    assert types(events) == ["TaskStarted"]
    assert events[0].deadline == clock.now() + timedelta(seconds=10)  # type: ignore[attr-defined]
    fx = effects(task, events, apply(task, events))
    assert isinstance(fx[0].payload, TaskTimerDue)
    assert fx[0].not_before is not None


def test_a_final_report_before_the_start_report_records_the_start_too() -> None:
    task = assigned(submitted(timeout_s=10)[0])
    events = decide(task, report(task, ReportTaskSucceeded, result=1), clock.now())  # type: ignore[arg-type]
    assert types(events) == ["TaskStarted", "TaskSucceeded"]
    after = apply(task, events)
    assert after.state == "succeeded"
    # ended in the same append: no time-out timer, and the start report coming late is stale
    assert not any(isinstance(f.payload, TaskTimerDue) for f in effects(task, events, after))
    assert stale(after, report(task, ReportTaskStarted)) is not None  # type: ignore[arg-type]
    failed = decide(task, report(task, ReportTaskFailed, error="e"), clock.now())  # type: ignore[arg-type]
    assert types(failed) == ["TaskStarted", "TaskFailed", "TaskRetryScheduled"]
    fx = effects(task, failed, apply(task, failed))
    assert [f.payload.timer for f in fx if isinstance(f.payload, TaskTimerDue)] == ["retry"]


def test_stale_report_has_no_effect() -> None:
    task = assigned(submitted()[0])
    old = report(task, ReportTaskSucceeded)
    task = apply(task, [TaskRequeued(task_id=task.task_id, attempt=2, reason="agent a lost")])
    task = assigned(task, "b")
    assert stale(task, old) is not None  # type: ignore[arg-type]
    assert decide(task, old, clock.now()) == []  # type: ignore[arg-type]


def test_failure_backs_off_then_dies_with_last_error() -> None:
    task = running(assigned(submitted(max_attempts=2)[0]))
    events = decide(task, report(task, ReportTaskFailed, error="boom"), clock.now())  # type: ignore[arg-type]
    assert types(events) == ["TaskFailed", "TaskRetryScheduled"]
    assert events[1].delay_s == 1  # type: ignore[attr-defined]
    assert events[1].attempt == 2  # type: ignore[attr-defined]
    task = apply(task, events)
    timer = TaskTimerDue(task_id=task.task_id, attempt=2, timer="retry")
    requeue = decide(task, timer, clock.now())
    assert types(requeue) == ["TaskRequeued"]
    task = running(assigned(apply(task, requeue)))
    assert task.attempt == 2
    events = decide(task, report(task, ReportTaskFailed, error="boom2"), clock.now())  # type: ignore[arg-type]
    assert types(events) == ["TaskFailed", "TaskDead"]
    assert events[1].error == "boom2"  # type: ignore[attr-defined]


def test_not_retryable_dies_at_once() -> None:
    task = running(assigned(submitted(max_attempts=5)[0]))
    cmd = report(task, ReportTaskFailed, error="bad input", retryable=False)
    assert types(decide(task, cmd, clock.now())) == ["TaskFailed", "TaskDead"]  # type: ignore[arg-type]


def test_timeout_fails_stops_agent_and_retries() -> None:
    task = assigned(submitted(timeout_s=5)[0])
    task = apply(task, decide(task, report(task, ReportTaskStarted), clock.now()))  # type: ignore[arg-type]
    timer = TaskTimerDue(task_id=task.task_id, attempt=1, timer="timeout")
    assert decide(task, timer, clock.now() + timedelta(seconds=4)) == []
    events = decide(task, timer, clock.now() + timedelta(seconds=5))
    assert types(events) == ["TaskFailed", "TaskRetryScheduled"]
    assert events[0].error == "timed out after 5s"  # type: ignore[attr-defined]
    fx = effects(task, events, apply(task, events))
    assert any(isinstance(f.payload, StopTask) and f.to == "a" for f in fx)


def test_result_too_large_is_refused() -> None:
    task = running(assigned(submitted()[0]))
    cmd = report(task, ReportTaskSucceeded, result="x" * 100)
    events = decide(task, cmd, clock.now(), Limits(max_result_bytes=50))  # type: ignore[arg-type]
    assert types(events) == ["TaskFailed", "TaskDead"]
    assert events[0].error == "result too large: 102 bytes > 50"  # type: ignore[attr-defined]


def test_cancel_running_stops_agent_and_tells_submitter() -> None:
    task = assigned(submitted(reply_to="me")[0])
    events = decide(task, CancelTask(task_id=task.task_id), clock.now())
    assert types(events) == ["TaskCancelled"]
    fx = effects(task, events, apply(task, events))
    assert {type(f.payload) for f in fx} == {StopTask, TaskOutcome}
    assert decide(apply(task, events), CancelTask(task_id=task.task_id), clock.now()) == []


def test_dependencies_wait_then_ready_or_cancelled() -> None:
    dep, _ = submitted()
    cmd = SubmitTask(capability="c", depends_on=(dep.task_id,))
    d = decide_submit(cmd, ALICE, Task(cmd.task_id), {dep.task_id: dep}, None, clock.now(), LIMIT)
    assert [a.stream for a in d.appends] == [f"task-{cmd.task_id}", f"task-{dep.task_id}"]
    child = fold(cmd.task_id, d.appends[0].events)
    assert not child.ready
    ok = ResolveDependency(task_id=child.task_id, dependency=dep.task_id, outcome="succeeded")
    assert types(decide(child, ok, clock.now())) == ["DependencyResolved", "TaskReady"]
    bad = ResolveDependency(
        task_id=child.task_id, dependency=dep.task_id, outcome="dead", reason="boom"
    )
    (cancelled,) = decide(child, bad, clock.now())
    assert isinstance(cancelled, TaskCancelled)
    assert cancelled.reason == f"dependency {dep.task_id} ended dead: boom"


def test_dependency_already_dead_cancels_at_submit() -> None:
    dep, _ = submitted()
    dep = apply(assigned(dep), [TaskDead(task_id=dep.task_id, attempt=1, error="e")])
    cmd = SubmitTask(capability="c", depends_on=(dep.task_id,))
    d = decide_submit(cmd, ALICE, Task(cmd.task_id), {dep.task_id: dep}, None, clock.now(), LIMIT)
    assert types(d.appends[0].events) == ["TaskSubmitted", "TaskCancelled"]
    assert any(isinstance(f.payload, TaskOutcome) for f in d.effects)


def test_repeated_key_answers_with_the_existing_task() -> None:
    first, _ = submitted(idempotency_key="k")
    cmd = SubmitTask(capability="c", idempotency_key="k")
    d = decide_submit(cmd, ALICE, Task(cmd.task_id), {}, first, clock.now(), LIMIT)
    assert d.appends == []
    assert d.duplicate_of == first.task_id
    (accepted,) = [f.payload for f in d.effects]
    assert isinstance(accepted, TaskAccepted)
    assert accepted.duplicate_of == first.task_id


def test_lost_agent_counts_as_an_attempt() -> None:
    task = assigned(submitted(max_attempts=2)[0])
    (requeued,) = decide_agent_gone(task, "a", "agent a lost")
    assert isinstance(requeued, TaskRequeued)
    assert requeued.attempt == 2
    task = assigned(apply(task, [requeued]), "b")
    assert types(decide_agent_gone(task, "b", "agent b lost")) == ["TaskFailed", "TaskDead"]
    assert decide_agent_gone(task, "a", "agent a lost") == []  # not its holder any more


def test_success_resolves_dependents() -> None:
    task = apply(submitted()[0], [])
    dependent = uuid4()
    from contracts import DependentAdded

    task = running(
        assigned(apply(task, [DependentAdded(task_id=task.task_id, dependent=dependent)]))
    )
    events = decide(task, report(task, ReportTaskSucceeded, result=1), clock.now())  # type: ignore[arg-type]
    fx = effects(task, events, apply(task, events))
    assert [type(f.payload).__name__ for f in fx] == ["TaskOutcome", "ResolveDependency"]
    assert isinstance(events[0], TaskSucceeded)
    _ = (TaskFailed, TaskReady, TaskRetryScheduled, TaskStarted)


def test_timers_carry_their_stream_and_end_with_the_attempt_they_watch() -> None:
    task = assigned(submitted(timeout_s=10)[0])
    started = decide(task, report(task, ReportTaskStarted), clock.now())  # type: ignore[arg-type]
    fx = effects(task, started, apply(task, started))
    assert [f.timer_of for f in fx] == [stream_of(task.task_id)]
    assert timers_to_cancel(task, apply(task, started)) == []  # the attempt goes on
    run = apply(task, started)
    done = decide(run, report(run, ReportTaskSucceeded, result=1), clock.now())  # type: ignore[arg-type]
    assert timers_to_cancel(run, apply(run, done)) == [stream_of(task.task_id)]
    failed = decide(run, report(run, ReportTaskFailed, error="e"), clock.now())  # type: ignore[arg-type]
    # the failed attempt's time-out goes; the retry timer of the same append is new and stays
    assert timers_to_cancel(run, apply(run, failed)) == [stream_of(task.task_id)]
    retry = [f for f in effects(run, failed, apply(run, failed)) if f.not_before is not None]
    assert [f.timer_of for f in retry] == [stream_of(task.task_id)]
