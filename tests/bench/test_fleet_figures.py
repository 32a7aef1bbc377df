"""The fleet bench's figures from recorded events: placement, losses, heartbeat lag, tasks/s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from workers.bench.fleet_agents import PROBE_LABEL, capabilities_of
from workers.bench.fleet_figures import FleetTally
from workers.store.base import RecordedEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(position: int, stream: str, type_: str, at_ms: float, **data: Any) -> RecordedEvent:
    return RecordedEvent(
        position=position,
        stream=stream,
        version=1,
        id=uuid4(),
        type=type_,
        schema_version=1,
        data=data,
        metadata={},
        recorded_at=T0 + timedelta(milliseconds=at_ms),
    )


def test_figures_follow_the_record() -> None:
    sent = (T0 + timedelta(milliseconds=100)).isoformat()
    events = [
        event(1, "agent-ns-sim-0", "AgentJoined", 0, agent_id="ns-sim-0"),
        event(2, "agent-other-0", "AgentJoined", 0, agent_id="other-0"),
        event(3, "task-a", "TaskSubmitted", 1000),
        event(4, "task-a", "TaskAssigned", 1010),
        event(5, "task-a", "TaskAssigned", 1500),  # a second attempt: not a placement latency
        event(6, "task-b", "TaskSubmitted", 1100),
        event(7, "task-b", "TaskAssigned", 1130),
        event(8, "task-a", "TaskSucceeded", 2000),
        event(9, "task-b", "TaskSucceeded", 3000),
        event(10, "agent-ns-sim-0", "AgentLost", 3100, agent_id="ns-sim-0"),
        event(11, "agent-other-0", "AgentLost", 3100, agent_id="other-0"),  # not ours
        event(
            12,
            "agent-ns-sim-0",
            "AgentUpdated",
            140,
            agent_id="ns-sim-0",
            labels={PROBE_LABEL: sent},
        ),
    ]
    tally = FleetTally("ns-sim")
    tally.add(events)
    figures = tally.figures()
    assert figures["placement_ms"]["n"] == 2
    assert figures["placement_ms"]["p50"] == 10.0
    assert figures["placement_ms"]["max"] == 30.0
    assert figures["false_losses"] == 1
    assert figures["heartbeat_lag_ms"]["p50"] == 40.0
    assert figures["tasks_succeeded"] == 2
    assert figures["tasks_per_s"] == 1.0  # 2 tasks from the first submit (1 s) to 3 s
    assert tally.joined == {"ns-sim-0"}


def test_every_agent_has_the_base_capability_and_one_pool() -> None:
    assert capabilities_of(13, 10) == ("bench.noop", "bench.pool.3")
