"""The fleet bench's figures from the store's own record: pure, no I/O.

- placement latency: a task's ``TaskSubmitted`` to its first ``TaskAssigned``,
  both as the store recorded them;
- false losses: ``AgentLost`` of a simulated agent while the bench was running
  (every one of them heartbeats until the bench stops it, so every loss is false);
- heartbeat handling lag: the probe's ``AgentUpdated``, recorded by the registry
  after every heartbeat queued before it, minus the send time in its label;
- tasks/s: tasks succeeded over the time from the first submit to the last success.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workers.bench.fleet_agents import PROBE_LABEL
from workers.bench.stats import percentile
from workers.store.base import RecordedEvent
from workers.tasks.state import STREAM_PREFIX

TASK_PREFIX = STREAM_PREFIX


@dataclass
class FleetTally:
    agent_prefix: str
    submitted: dict[str, datetime] = field(default_factory=dict)
    placement_ms: list[float] = field(default_factory=list)
    assigned: set[str] = field(default_factory=set)
    succeeded: int = 0
    dead: int = 0
    first_submit: datetime | None = None
    last_success: datetime | None = None
    joined: set[str] = field(default_factory=set)
    lost: list[str] = field(default_factory=list)
    probe_lag_ms: list[float] = field(default_factory=list)

    def add(self, events: Iterable[RecordedEvent]) -> None:
        for e in events:
            if e.stream.startswith(TASK_PREFIX):
                self._task(e)
            elif e.type in ("AgentJoined", "AgentLost", "AgentUpdated"):
                self._agent(e)

    def _task(self, e: RecordedEvent) -> None:
        task = e.stream
        if e.type == "TaskSubmitted":
            self.submitted[task] = e.recorded_at
            if self.first_submit is None:
                self.first_submit = e.recorded_at
        elif e.type == "TaskAssigned" and task not in self.assigned:
            self.assigned.add(task)
            submitted = self.submitted.get(task)
            if submitted is not None:
                self.placement_ms.append((e.recorded_at - submitted).total_seconds() * 1000)
        elif e.type == "TaskSucceeded":
            self.succeeded += 1
            self.last_success = e.recorded_at
        elif e.type == "TaskDead":
            self.dead += 1

    def _agent(self, e: RecordedEvent) -> None:
        agent_id = str(e.data.get("agent_id", ""))
        if not agent_id.startswith(self.agent_prefix):
            return
        if e.type == "AgentJoined":
            self.joined.add(agent_id)
        elif e.type == "AgentLost":
            self.lost.append(agent_id)
        else:
            labels: Any = e.data.get("labels") or {}
            sent = labels.get(PROBE_LABEL) if isinstance(labels, dict) else None
            if isinstance(sent, str):
                lag = e.recorded_at - datetime.fromisoformat(sent)
                self.probe_lag_ms.append(lag.total_seconds() * 1000)

    def tasks_per_s(self) -> float | None:
        if self.first_submit is None or self.last_success is None:
            return None
        span = (self.last_success - self.first_submit).total_seconds()
        return round(self.succeeded / span, 1) if span > 0 else None

    def figures(self) -> dict[str, Any]:
        return {
            "tasks_submitted": len(self.submitted),
            "tasks_assigned": len(self.assigned),
            "tasks_succeeded": self.succeeded,
            "tasks_dead": self.dead,
            "tasks_per_s": self.tasks_per_s(),
            "placement_ms": spread(self.placement_ms),
            "heartbeat_lag_ms": spread(self.probe_lag_ms),
            "false_losses": len(self.lost),
            "agents_lost": sorted(set(self.lost))[:20],
        }


def spread(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
    }
