"""The history checker finds each broken promise, and passes a clean history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.history_check import check_history


@dataclass(frozen=True)
class E:
    position: int
    type: str
    data: dict[str, Any]


def history(*items: tuple[str, dict[str, Any]]) -> list[E]:
    return [E(i + 1, kind, data) for i, (kind, data) in enumerate(items)]


JOIN = ("AgentJoined", {"agent_id": "a", "capacity": 1, "capabilities": ["x"]})
JOIN_B = ("AgentJoined", {"agent_id": "b", "capacity": 1, "capabilities": ["x"]})


def sub(t: str) -> tuple[str, dict[str, Any]]:
    return ("TaskSubmitted", {"task_id": t})


def assign(t: str, agent: str = "a") -> tuple[str, dict[str, Any]]:
    return ("TaskAssigned", {"task_id": t, "agent_id": agent, "attempt": 1})


def ok(t: str) -> tuple[str, dict[str, Any]]:
    return ("TaskSucceeded", {"task_id": t})


def test_clean_history_passes() -> None:
    report = check_history(
        history(JOIN, sub("t1"), sub("t2"), assign("t1"), ok("t1"), assign("t2"), ok("t2"))
    )
    assert report.ok, report.violations
    assert report.terminal["TaskSucceeded"] == 2
    assert report.max_agent_load == {"a": 1}


def test_over_capacity_is_found() -> None:
    report = check_history(
        history(JOIN, sub("t1"), sub("t2"), assign("t1"), assign("t2"), ok("t1"), ok("t2"))
    )
    assert any("over capacity" in v for v in report.violations)


def test_double_success_and_unfinished_are_found() -> None:
    report = check_history(history(JOIN, sub("t1"), sub("t2"), assign("t1"), ok("t1"), ok("t1")))
    assert any("ended twice" in v for v in report.violations)
    assert any("t2 never reached" in v for v in report.violations)


def test_lost_agent_work_must_be_placed_again() -> None:
    lost = ("AgentLost", {"agent_id": "a", "silent_for_s": 9})
    requeued = ("TaskRequeued", {"task_id": "t1", "attempt": 2, "reason": "agent a lost"})
    bad = check_history(history(JOIN, JOIN_B, sub("t1"), assign("t1"), lost, requeued))
    assert any("never placed again" in v for v in bad.violations)
    good = check_history(
        history(JOIN, JOIN_B, sub("t1"), assign("t1"), lost, requeued, assign("t1", "b"), ok("t1"))
    )
    assert good.ok, good.violations
    assert good.reassigned == 1


def test_resource_over_capacity_is_found() -> None:
    declare = ("ResourceDeclared", {"resource": "gpu", "capacity": 1})
    grant = [("LeaseGranted", {"resource": "gpu", "lease_id": f"l{i}"}) for i in range(2)]
    report = check_history(history(declare, *grant))
    assert any("resource gpu over capacity" in v for v in report.violations)
    release = ("LeaseReleased", {"resource": "gpu", "lease_id": "l0"})
    assert check_history(history(declare, grant[0], release, grant[1])).ok
