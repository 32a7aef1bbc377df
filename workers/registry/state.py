"""The agent aggregate (stream ``agent-<id>``) and how each recorded fact changes it.

The one fold of an agent's state: the registry decides on it, and every reader
(the allocator, the dashboard, ``rally agents``, ``rally status``, metrics)
shows it, so an agent's status means the same thing everywhere.

Lifecycle: new → live ⇄ draining → left, and live/draining → lost when silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from contracts import AgentDraining, AgentJoined, AgentLeft, AgentLost, AgentUpdated, Event

Status = Literal["new", "live", "draining", "left", "lost"]
STATUSES: tuple[Status, ...] = ("live", "draining", "lost", "left")  # the ones history records
PRESENT: frozenset[Status] = frozenset({"live", "draining"})
STREAM_PREFIX = "agent-"


def stream_of(agent_id: str) -> str:
    return f"{STREAM_PREFIX}{agent_id}"


def agent_of(stream: str) -> str | None:
    """The agent id of an ``agent-*`` stream name, None for any other stream."""
    return stream[len(STREAM_PREFIX) :] if stream.startswith(STREAM_PREFIX) else None


@dataclass(frozen=True, slots=True)
class Agent:
    agent_id: str
    status: Status = "new"
    capabilities: tuple[str, ...] = ()
    capacity: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    software_version: str = "unknown"
    heartbeat_interval_s: float = 5.0
    bundles: bool = True  # false: its notices go alone, never bundled
    version: int = 0  # the stream version this state reflects

    @property
    def present(self) -> bool:
        return self.status in PRESENT


def evolve(state: Agent, event: Event) -> Agent:
    nxt = replace(state, version=state.version + 1)
    match event:
        case AgentJoined() | AgentUpdated():
            return replace(
                nxt,
                status="live",
                capabilities=tuple(event.capabilities),
                capacity=event.capacity,
                labels=dict(event.labels),
                software_version=event.software_version,
                heartbeat_interval_s=event.heartbeat_interval_s,
                bundles=event.bundles,
            )
        case AgentDraining():
            return replace(nxt, status="draining")
        case AgentLeft():
            return replace(nxt, status="left")
        case AgentLost():
            return replace(nxt, status="lost")
    return nxt


def fold(agent_id: str, events: list[Event]) -> Agent:
    state = Agent(agent_id)
    for event in events:
        state = evolve(state, event)
    return state
