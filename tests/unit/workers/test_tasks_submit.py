"""Submit decisions without a broker: identity picks the inbox, owners, conflicts, sizes, deps."""

from __future__ import annotations

from uuid import uuid4

from pydantic import JsonValue

from contracts import (
    CancelTask,
    Event,
    ReportTaskSucceeded,
    SubmitTask,
    TaskAccepted,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskOutcome,
    TaskRefused,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.runtime.clock import ManualClock
from workers.tasks.domain import Limits, decide, effects, refuse_cancel
from workers.tasks.state import Task, evolve, fold
from workers.tasks.submit import Submitter, decide_submit

clock = ManualClock()
LIMIT = 1024 * 1024
ALICE = Submitter("alice", sender="alice")
MALLORY = Submitter("mallory", sender="alice")  # claims alice's client id as sender
GUEST = Submitter("guest", service=True, sender="client-7")


def record(cmd: SubmitTask, by: Submitter = ALICE) -> Task:
    d = decide_submit(cmd, by, Task(cmd.task_id), {}, None, clock.now(), LIMIT)
    return fold(cmd.task_id, d.appends[0].events)


def apply(task: Task, *events: Event) -> Task:
    for event in events:
        task = evolve(task, event)
    return task


def succeeded(task: Task, result: object) -> Task:
    placed = TaskAssigned(
        task_id=task.task_id, agent_id="a", attempt=1, fencing_token=2, reason="r"
    )
    done = TaskSucceeded(task_id=task.task_id, agent_id="a", attempt=1, result=result)  # type: ignore[arg-type]
    return apply(task, placed, done)


def outcome_inboxes(task: Task) -> list[str | None]:
    cancel = decide(task, CancelTask(task_id=task.task_id), clock.now())
    return [
        f.to
        for f in effects(task, cancel, apply(task, *cancel))
        if isinstance(f.payload, TaskOutcome)
    ]


# ---- replies follow identity ----


def test_a_plain_users_sender_and_reply_to_do_not_pick_its_inbox() -> None:
    cmd = SubmitTask(capability="c", reply_to="bob")
    task = record(cmd, Submitter("alice", sender="bob"))
    assert task.spec is not None
    assert (task.owner, task.spec.submitted_by, task.inbox) == ("alice", "alice", "alice")
    assert outcome_inboxes(task) == ["alice"]


def test_an_anonymous_submit_is_answered_nowhere() -> None:
    task = record(SubmitTask(capability="c", reply_to="bob"), Submitter(None, sender="bob"))
    assert (task.owner, task.inbox) == (None, None)
    assert outcome_inboxes(task) == []


def test_a_service_user_answers_to_its_sender_or_reply_to() -> None:
    assert record(SubmitTask(capability="c"), GUEST).inbox == "client-7"
    task = record(SubmitTask(capability="c", reply_to="client-9"), GUEST)
    assert task.spec is not None
    assert (task.owner, task.spec.submitted_by, task.inbox) == ("guest", "client-7", "client-9")


def test_a_new_task_sends_no_task_accepted() -> None:
    cmd = SubmitTask(capability="c")
    d = decide_submit(cmd, ALICE, Task(cmd.task_id), {}, None, clock.now(), LIMIT)
    assert not any(isinstance(f.payload, TaskAccepted) for f in d.effects)


def test_the_submit_time_and_pending_timeout_are_recorded() -> None:
    task = record(SubmitTask(capability="c", pending_timeout_s=30))
    assert (task.submitted_at, task.pending_timeout_s) == (clock.now(), 30)


# ---- owners: cancel ----


def test_only_the_owner_or_a_service_user_may_cancel() -> None:
    task = record(SubmitTask(capability="c"))
    assert refuse_cancel(task, "alice", False) is None
    assert refuse_cancel(task, "guest", True) is None
    assert "may not cancel" in (refuse_cancel(task, "mallory", False) or "")
    assert "anonymous" in (refuse_cancel(task, None, False) or "")
    assert refuse_cancel(Task(uuid4()), "mallory", False) is None  # nothing to cancel


# ---- conflicts ----


def test_the_victims_task_id_with_another_key_and_owner_is_refused_not_answered() -> None:
    victim_cmd = SubmitTask(capability="c", payload=1, reply_to="alice")
    victim = succeeded(record(victim_cmd), {"secret": 1})
    attack = victim_cmd.model_copy(update={"idempotency_key": "mallory-key"})
    d = decide_submit(attack, MALLORY, victim, {}, None, clock.now(), LIMIT)
    assert d.appends == []
    assert d.duplicate_of is None
    assert [(type(f.payload), f.to) for f in d.effects] == [(TaskRefused, "mallory")]
    assert d.refused is not None
    assert d.refused.reason == "conflict"


def test_a_repeat_by_another_owner_with_the_same_spec_is_refused() -> None:
    first = record(SubmitTask(capability="c", idempotency_key="k"))
    cmd = SubmitTask(capability="c", idempotency_key="k")
    d = decide_submit(cmd, MALLORY, Task(cmd.task_id), {}, first, clock.now(), LIMIT)
    assert d.refused is not None
    assert d.refused.reason == "conflict"
    assert "another submitter" in d.refused.detail


def test_a_repeat_with_another_spec_or_key_is_refused() -> None:
    first_cmd = SubmitTask(capability="c", payload=1, idempotency_key="k")
    first = record(first_cmd)
    other_payload = SubmitTask(capability="c", payload=2, idempotency_key="k")
    d = decide_submit(
        other_payload, ALICE, Task(other_payload.task_id), {}, first, clock.now(), LIMIT
    )
    assert d.refused is not None
    assert "payload" in d.refused.detail
    other_key = first_cmd.model_copy(update={"idempotency_key": "k2"})
    d = decide_submit(other_key, ALICE, first, {}, None, clock.now(), LIMIT)
    assert d.refused is not None
    assert "idempotency key" in d.refused.detail
    # the key claimed by one task, the task id of another: not the same task
    other = record(SubmitTask(capability="c", payload=1))
    both = first_cmd.model_copy(update={"task_id": other.task_id})
    d = decide_submit(both, ALICE, other, {}, first, clock.now(), LIMIT)
    assert d.refused is not None
    assert d.refused.reason == "conflict"


def test_a_true_duplicate_hears_the_existing_task_and_its_outcome() -> None:
    cmd = SubmitTask(capability="c", payload=[1, 2], idempotency_key="k")
    first = succeeded(record(cmd), 42)
    again = cmd.model_copy(update={"task_id": uuid4()})
    d = decide_submit(again, ALICE, Task(again.task_id), {}, first, clock.now(), LIMIT)
    assert d.refused is None
    assert d.duplicate_of == first.task_id
    accepted, outcome = (f.payload for f in d.effects)
    assert isinstance(accepted, TaskAccepted)
    assert accepted.duplicate_of == first.task_id
    assert isinstance(outcome, TaskOutcome)
    assert outcome.result == 42
    assert {f.to for f in d.effects} == {"alice"}


# ---- dependencies ----


def test_a_dependency_never_submitted_cancels_and_writes_only_its_own_stream() -> None:
    missing = [uuid4() for _ in range(1000)]
    cmd = SubmitTask(capability="c", depends_on=tuple(missing))
    d = decide_submit(cmd, ALICE, Task(cmd.task_id), {}, None, clock.now(), LIMIT)
    assert [a.stream for a in d.appends] == [f"task-{cmd.task_id}"]
    submitted, cancelled = d.appends[0].events
    assert isinstance(submitted, TaskSubmitted)
    assert isinstance(cancelled, TaskCancelled)
    assert cancelled.reason == f"depends on unknown task {missing[0]}"
    assert d.unknown_dependency == missing[0]
    assert [type(f.payload) for f in d.effects] == [TaskOutcome]


def test_a_self_dependency_is_cancelled_at_submit() -> None:
    tid = uuid4()
    cmd = SubmitTask(task_id=tid, capability="c", depends_on=(tid,))
    d = decide_submit(cmd, ALICE, Task(tid), {tid: Task(tid)}, None, clock.now(), LIMIT)
    (own,) = d.appends
    assert isinstance(own.events[-1], TaskCancelled)
    assert own.events[-1].reason == "a task cannot depend on itself"
    assert d.unknown_dependency is None  # nothing to wait for


# ---- sizes ----


def test_a_payload_that_grows_when_re_encoded_is_refused_too_large() -> None:
    raw = "[" + ",".join(["1e15"] * 800) + "]"  # 4 KB in, 15 KB once re-encoded
    cmd = SubmitTask.model_validate_json(f'{{"capability":"c","payload":{raw}}}')
    d = decide_submit(cmd, ALICE, Task(cmd.task_id), {}, None, clock.now(), 8 * 1024)
    assert len(raw) < 8 * 1024
    assert d.appends == []
    assert d.refused is not None
    assert d.refused.reason == "too_large"
    assert [f.to for f in d.effects] == ["alice"]


def test_a_result_whose_outcome_would_be_too_large_ends_the_task_without_retries() -> None:
    task = record(SubmitTask(capability="c", max_attempts=3))
    task = apply(
        task,
        TaskAssigned(task_id=task.task_id, agent_id="a", attempt=1, fencing_token=2, reason="r"),
    )
    result: list[JsonValue] = [1e15] * 800  # its outcome envelope is over 8 KB
    report = ReportTaskSucceeded(
        task_id=task.task_id, agent_id="a", attempt=1, fencing_token=2, result=result
    )
    events = decide(
        task, report, clock.now(), Limits(max_result_bytes=LIMIT, max_message_bytes=8192)
    )
    failed, dead = events[-2:]
    assert isinstance(failed, TaskFailed)
    assert failed.error_type == "ResultTooLarge"
    assert not failed.retryable
    assert isinstance(dead, TaskDead)
    assert "TaskOutcome" in failed.error
