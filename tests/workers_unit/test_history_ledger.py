"""The ledger side of the history check: accepted against recorded, and effects applied twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.history_check import check_history, duplicate_effects, reconcile


@dataclass(frozen=True)
class E:
    position: int
    type: str
    data: dict[str, Any]
    stream: str = "task-t1"
    version: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)


def submitted(task: str, position: int) -> E:
    return E(position, "TaskSubmitted", {"task_id": task}, f"task-{task}", 1)


def succeeded(task: str, position: int) -> E:
    return E(position, "TaskSucceeded", {"task_id": task}, f"task-{task}", 2)


def test_accepted_and_ended_is_clean() -> None:
    history = [submitted("a", 1), succeeded("a", 2)]
    ledger = reconcile(check_history(history), ["a"])
    assert ledger.ok
    assert ledger.counts() == {
        "accepted": 1,
        "terminal": 1,
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
    }


def test_accepted_but_never_recorded_or_never_ended_is_lost() -> None:
    ledger = reconcile(check_history([submitted("b", 1)]), ["a", "b"])
    assert ledger.lost == ["task a accepted but never recorded", "task b accepted but never ended"]
    assert ledger.terminal == 0


def test_unconfirmed_may_be_recorded_but_a_stranger_is_unexpected() -> None:
    history = [submitted("maybe", 1), succeeded("maybe", 2), submitted("x", 3), succeeded("x", 4)]
    ledger = reconcile(check_history(history), [], attempted=["maybe"])
    assert ledger.unexpected == ["task x recorded but never sent"]


def test_a_task_ending_twice_is_a_duplicate() -> None:
    history = [submitted("a", 1), succeeded("a", 2), E(3, "TaskSucceeded", {"task_id": "a"})]
    ledger = reconcile(check_history(history), ["a"])
    assert ledger.duplicated == ["task a ended twice (again with TaskSucceeded)"]


def test_one_message_applied_twice_and_version_holes_are_found() -> None:
    once = {"message_id": "m1"}
    history = [
        E(1, "TaskProgressed", {}, "task-a", 1, once),
        E(2, "TaskProgressed", {}, "task-a", 2, once),  # the same report, again
        E(3, "TaskProgressed", {}, "task-a", 3, {"message_id": "m2"}),
        E(4, "TaskSubmitted", {}, "task-b", 1, once),  # one message, two streams: fine
        E(5, "TaskReady", {}, "task-b", 3),  # version 2 is missing
    ]
    assert duplicate_effects(history) == [
        "task-a: message m1 applied 2 times (TaskProgressed)",
        "task-b: versions not contiguous from 1: [1, 3]",
    ]


def test_events_without_a_message_id_are_not_duplicates() -> None:
    history = [E(1, "AgentLost", {}, "agent-x", 1), E(2, "AgentLost", {}, "agent-x", 2)]
    assert duplicate_effects(history) == []
