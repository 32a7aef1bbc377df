"""An assignment an agent never started is not placed on that agent again at once.

Seen on a 3-node cluster after a node was killed (docs/operations.md, "Running on a
cluster"): an agent that kept heartbeating but did not hear its inbox was, being the
least loaded, chosen again for every attempt of the tasks it had swallowed, until
they ran out of attempts. The timeout of a never-started attempt now steers the next
attempt to another agent.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from contracts import TaskFailed, TaskRequeued, TaskRetryScheduled, TaskStarted
from tests.unit.workers.test_allocator_planning import NOW, Feed, assignments
from workers.allocator.planning import Plan, place


def assign_to(feed: Feed, tid: UUID) -> str:
    plan = Plan()
    place(feed.view, NOW, plan)
    (assigned,) = assignments(plan)
    assert assigned.task_id == tid
    feed.commit(plan)
    return assigned.agent_id


def fail(feed: Feed, tid: UUID, agent: str, error_type: str, error: str) -> None:
    feed(
        f"task-{tid}",
        TaskFailed(task_id=tid, agent_id=agent, attempt=1, error=error, error_type=error_type),
        TaskRetryScheduled(task_id=tid, attempt=2, delay_s=1, not_before=NOW, reason=error),
        TaskRequeued(task_id=tid, attempt=2, reason="retry after back-off"),
    )


def test_the_attempt_after_a_never_started_one_goes_to_another_agent() -> None:
    feed = Feed()
    feed.agent("a0", 4, "c")  # first by id: the tie-break picks it while all are idle
    feed.agent("a1", 4, "c")
    tid = feed.task()
    assert assign_to(feed, tid) == "a0"
    fail(feed, tid, "a0", "Timeout", "not started within 30s")
    plan = Plan()
    place(feed.view, NOW + timedelta(seconds=2), plan)  # after the back-off
    (retry,) = assignments(plan)
    assert retry.agent_id == "a1"


def test_the_silent_agent_is_avoided_for_as_long_as_the_time_out_then_offered_again() -> None:
    feed = Feed()
    feed.agent("a0", 4, "c")
    tid = feed.task()
    assert assign_to(feed, tid) == "a0"
    fail(feed, tid, "a0", "Timeout", "not started within 30s")
    plan = Plan()
    place(feed.view, NOW + timedelta(seconds=2), plan)
    assert assignments(plan) == []  # the only agent: the task waits rather than vanish there
    plan = Plan()
    place(feed.view, NOW + timedelta(seconds=301), plan)  # the task's time-out (300 s default)
    assert [a.agent_id for a in assignments(plan)] == ["a0"]


def test_a_task_that_started_then_failed_may_return_to_the_same_agent() -> None:
    feed = Feed()
    feed.agent("a0", 4, "c")
    feed.agent("a1", 4, "c")
    tid = feed.task()
    assert assign_to(feed, tid) == "a0"
    feed(f"task-{tid}", TaskStarted(task_id=tid, agent_id="a0", attempt=1, deadline=NOW))
    fail(feed, tid, "a0", "Timeout", "timed out after 300s")  # it heard, it ran: no avoiding
    plan = Plan()
    place(feed.view, NOW + timedelta(seconds=2), plan)
    (retry,) = assignments(plan)
    assert retry.agent_id == "a0"


def test_an_agents_own_failure_before_its_start_report_is_not_a_silence() -> None:
    feed = Feed()
    feed.agent("a0", 4, "c")
    feed.agent("a1", 4, "c")
    tid = feed.task()
    assert assign_to(feed, tid) == "a0"
    fail(feed, tid, "a0", "ConnectionError", "flaky upstream")
    plan = Plan()
    place(feed.view, NOW + timedelta(seconds=2), plan)
    (retry,) = assignments(plan)
    assert retry.agent_id == "a0"
