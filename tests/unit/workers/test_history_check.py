"""The history checker finds each broken promise, and passes a clean history.

Histories are real contract events on their owners' streams (tests/support/recorded.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from uuid import uuid4

from contracts import TaskCancelled, TaskDead
from tests.support.recorded import (
    assigned,
    declared,
    granted,
    history,
    joined,
    lost,
    released,
    requeued,
    submitted,
    succeeded,
    through_store,
)
from workers.history_check import check_history
from workers.store import open_store
from workers.tasks.state import stream_of

T1, T2 = uuid4(), uuid4()


def test_clean_history_passes() -> None:
    report = check_history(
        history(
            joined("a"),
            submitted(T1),
            submitted(T2),
            assigned(T1),
            succeeded(T1),
            assigned(T2),
            succeeded(T2),
        )
    )
    assert report.ok, report.violations
    assert report.terminal["TaskSucceeded"] == 2
    assert report.max_agent_load == {"a": 1}
    assert report.states == {str(T1): "TaskSucceeded", str(T2): "TaskSucceeded"}


def test_over_capacity_is_found() -> None:
    report = check_history(
        history(
            joined("a"),
            submitted(T1),
            submitted(T2),
            assigned(T1),
            assigned(T2),
            succeeded(T1),
            succeeded(T2),
        )
    )
    assert "agent a over capacity: 2 > 1" in report.violations


def test_double_success_and_unfinished_are_found() -> None:
    report = check_history(
        history(
            joined("a"), submitted(T1), submitted(T2), assigned(T1), succeeded(T1), succeeded(T1)
        )
    )
    assert f"task {T1} ended twice (again with TaskSucceeded)" in report.violations
    assert f"task {T2} never reached a terminal state" in report.violations


def test_a_task_with_two_terminal_events_fails_whatever_lies_between() -> None:
    # the fold keeps only the last state (pending again here): the checker counts endings
    dead = (stream_of(T1), TaskDead(task_id=T1, attempt=2, error="late"))
    report = check_history(
        history(joined("a"), submitted(T1), assigned(T1), succeeded(T1), requeued(T1, 2, "?"), dead)
    )
    assert not report.ok
    assert report.violations == [f"task {T1} ended twice (again with TaskDead)"]
    assert report.terminal == {"TaskSucceeded": 1, "TaskDead": 1}
    assert report.states == {str(T1): "TaskDead"}


def test_nothing_is_assigned_after_the_end_or_while_held() -> None:
    cancel = (stream_of(T1), TaskCancelled(task_id=T1, reason="stop"))
    late = check_history(history(joined("a"), submitted(T1), cancel, assigned(T1)))
    assert late.violations[0] == f"task {T1} assigned after it ended"
    twice = check_history(
        history(
            joined("a"),
            joined("b"),
            submitted(T1),
            assigned(T1),
            assigned(T1, "b", 2),
            succeeded(T1, "b", 2),
        )
    )
    assert twice.violations == [f"task {T1} assigned to b while held by a"]


def test_lost_agent_work_must_be_placed_again() -> None:
    start = [joined("a"), joined("b"), submitted(T1), assigned(T1), lost("a")]
    again = requeued(T1, 2, "agent a lost")
    bad = check_history(history(*start, again))
    assert f"task {T1} of lost agent a was never placed again" in bad.violations
    good = check_history(history(*start, again, assigned(T1, "b", 2), succeeded(T1, "b", 2)))
    assert good.ok, good.violations
    assert good.reassigned == 1


def test_resource_over_capacity_is_found() -> None:
    leases = [uuid4(), uuid4()]
    report = check_history(
        history(declared("gpu", 1), *(granted("gpu", lease) for lease in leases))
    )
    assert "resource gpu over capacity: 2 > 1" in report.violations
    report = check_history(
        history(
            declared("gpu", 1),
            granted("gpu", leases[0]),
            released("gpu", leases[0]),
            granted("gpu", leases[1]),
        )
    )
    assert report.ok, report.violations
    assert report.max_resource_use == {"gpu": 1}


def test_a_record_that_cannot_be_read_is_a_violation() -> None:
    good = history(submitted(T1))
    broken = replace(good[0], data={"task_id": "not a uuid"})
    report = check_history([broken])
    assert not report.ok
    assert report.violations[0].startswith(f"TaskSubmitted at position 1 ({stream_of(T1)})")


async def test_the_verdict_is_the_same_read_back_from_a_real_store(tmp_path: Path) -> None:
    records = history(
        joined("a"),
        joined("b"),
        submitted(T1),
        submitted(T2),
        assigned(T1),
        assigned(T2),  # over a's capacity
        lost("a"),
        requeued(T1, 2, "agent a lost"),
        assigned(T1, "b", 2),
        succeeded(T1, "b", 2),
    )
    store = open_store(f"sqlite:///{tmp_path}/rally.db")
    await store.start()
    try:
        stored = await through_store(store, records)
    finally:
        await store.close()
    assert [r.type for r in stored] == [r.type for r in records]
    expected = check_history(records)
    assert not expected.ok
    assert check_history(stored) == expected
