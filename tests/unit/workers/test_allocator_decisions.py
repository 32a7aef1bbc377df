"""The allocator's decisions, pure: isolation, wait reasons, time-outs, lease renewals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

from contracts import (
    AcquireLease,
    DeclareResource,
    LeaseGranted,
    LeaseLost,
    RenewLease,
    SubmitTask,
    TaskAssigned,
    TaskDead,
    TaskFailed,
    TaskSubmitted,
)
from tests.unit.workers.test_allocator_planning import NOW, Feed, assignments
from workers.allocator.planning import (
    Plan,
    grant_waiters,
    on_commands,
    overdue,
    place,
    why_waiting,
)
from workers.tasks import placement
from workers.tasks.state import fold


def _submitted(feed: Feed, **fields: Any) -> Any:
    tid = uuid4()
    feed(
        f"task-{tid}",
        TaskSubmitted(task_id=tid, capability="c", ready=True, submitted_at=NOW, **fields),
    )
    return tid


def test_an_assignment_too_large_to_send_is_set_apart_and_the_rest_are_placed() -> None:
    feed = Feed()
    feed.agent("a", 4, "c")
    big = _submitted(feed, payload="x" * 5000, priority=9)
    small = _submitted(feed, payload="ok")
    plan = Plan(max_bytes=4096)
    place(feed.view, NOW, plan)
    assert [a.task_id for a in assignments(plan)] == [small]
    ((task_id, why),) = plan.undeliverable
    assert task_id == big
    assert "AssignTask message is" in why
    assert "over the limit of 4096" in why
    assert len(plan.outbox) == 1  # only the small one's notice, encoded once


def test_a_command_that_cannot_be_decided_fails_alone() -> None:
    feed = Feed()
    plan = Plan()
    stray: Any = SubmitTask(capability="c")  # not a lease command
    good = DeclareResource(resource="r", capacity=1)
    on_commands(feed.view, [stray, good], NOW, plan)
    assert list(plan.failed) == [0]
    assert "resource-r" in plan.appends


def _held_lease(feed: Feed) -> LeaseGranted:
    plan = Plan()
    lease_id = uuid4()
    on_commands(
        feed.view,
        [
            DeclareResource(resource="r", capacity=1),
            AcquireLease(resource="r", agent_id="a", lease_id=lease_id, ttl_s=5),
        ],
        NOW,
        plan,
    )
    feed.commit(plan)
    plan = Plan()
    grant_waiters(feed.view, NOW, plan)
    feed.commit(plan)
    (granted,) = [e for e in plan.appends["resource-r"][1] if isinstance(e, LeaseGranted)]
    return granted


def test_a_renewal_with_a_wrong_token_neither_renews_nor_answers() -> None:
    feed = Feed()
    feed.agent("a", 1, "c")
    granted = _held_lease(feed)
    holder = feed.view.resources["r"].holders[granted.lease_id]
    before = holder.expires_at
    later = NOW + timedelta(seconds=3)
    plan = Plan()
    wrong = RenewLease(
        resource="r",
        agent_id="a",
        lease_id=granted.lease_id,
        fencing_token=granted.fencing_token + 7,
    )
    on_commands(feed.view, [wrong], later, plan)
    assert plan.direct == []
    assert plan.effects == []
    assert holder.expires_at == before
    right = wrong.model_copy(update={"fencing_token": granted.fencing_token})
    on_commands(feed.view, [right], later, plan)
    assert holder.expires_at == later + timedelta(seconds=5)


def test_a_renewal_of_a_lease_nobody_holds_is_lost_under_the_presented_token() -> None:
    feed = Feed()
    plan = Plan()
    renew = RenewLease(resource="r", agent_id="a", lease_id=uuid4(), fencing_token=3)
    on_commands(feed.view, [renew], NOW, plan)
    (notice,) = plan.direct
    assert isinstance(notice.payload, LeaseLost)
    assert notice.payload.fencing_token == 3
    assert notice.to == "a"


def test_every_wait_has_a_reason_naming_what_is_missing() -> None:
    feed = Feed()
    gpu = _submitted(feed, resources=("gpu",))
    nobody = _submitted(feed)
    plan = Plan()
    place(feed.view, NOW, plan)
    assert feed.view.waits[gpu] == "resource 'gpu' is not declared"
    assert feed.view.waits[nobody] == "no live agent with 'c'"
    feed.agent("a", 1, "c")
    feed.commit(_placed_one(feed))
    third = _submitted(feed)
    place(feed.view, NOW, Plan())
    assert feed.view.waits[third] == "no free slot on the 1 live agent with 'c'"


def _placed_one(feed: Feed) -> Plan:
    plan = Plan()
    place(feed.view, NOW, plan)
    assert len(assignments(plan)) == 1
    return plan


def test_a_task_pending_past_its_timeout_is_found_with_why_it_waited() -> None:
    feed = Feed()
    tid = _submitted(feed, resources=("gpu",), pending_timeout_s=60)
    place(feed.view, NOW, Plan())
    assert overdue(feed.view, NOW + timedelta(seconds=59)) == ([], [])
    _, expired = overdue(feed.view, NOW + timedelta(seconds=61))
    assert expired == [(tid, "resource 'gpu' is not declared")]
    task = feed.view.tasks[tid]
    assert why_waiting(feed.view, task) == "resource 'gpu' is not declared"
    (dead,) = placement.decide_pending_expired(
        task.task, NOW + timedelta(seconds=61), expired[0][1]
    )
    assert isinstance(dead, TaskDead)
    assert dead.error == "pending for more than 60s: resource 'gpu' is not declared"


def test_an_assignment_never_started_times_out_without_a_timer() -> None:
    feed = Feed()
    feed.agent("a", 1, "c")
    tid = _submitted(feed, timeout_s=30)
    plan = _placed_one(feed)
    assert not any(e.not_before for e in plan.effects)  # no watchdog written
    feed.commit(plan)
    assert overdue(feed.view, NOW + timedelta(seconds=29)) == ([], [])
    assert overdue(feed.view, NOW + timedelta(seconds=30)) == ([tid], [])
    open_task = feed.view.tasks[tid]
    assert open_task.assigned_at == NOW
    events = placement.decide_not_started(open_task.task, NOW, NOW + timedelta(seconds=30))
    failed = events[0]
    assert isinstance(failed, TaskFailed)
    assert (failed.error_type, failed.error) == ("Timeout", "not started within 30s")
    assert placement.decide_not_started(open_task.task, NOW, NOW + timedelta(seconds=29)) == []


def test_the_tasks_domain_gives_the_assignment_and_its_fencing_token() -> None:
    tid = uuid4()
    task = fold(
        tid, [TaskSubmitted(submitted_at=NOW, task_id=tid, capability="c", ready=True, payload=1)]
    )
    assignment = placement.assign(task, "a", reason="r", leases=())
    (assigned,) = assignment.events
    assert isinstance(assigned, TaskAssigned)
    assert assigned.fencing_token == assignment.fencing_token == task.version + 1
    assert assignment.stream == placement.stream_of(tid)
    (notice,) = assignment.effects
    assert notice.to == "a"
    assert notice.not_before is None
    assert placement.decide_undeliverable(task, "too big") == [
        TaskDead(task_id=tid, attempt=0, error="assignment undeliverable: too big")
    ]
