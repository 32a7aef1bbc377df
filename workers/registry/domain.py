"""What happens to an agent (stream ``agent-<id>``): pure decide, no I/O.

Its state and its one fold are in workers/registry/state.py. A left or lost
agent that registers again joins afresh. Heartbeats are not events: the
service keeps the last one in memory and asks ``decide`` only when it matters
(a draining agent reaching load 0, a lost agent heard from again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts import (
    AgentDraining,
    AgentJoined,
    AgentLeft,
    AgentLost,
    AgentUpdated,
    DeregisterAgent,
    Event,
    Heartbeat,
    RegisterAgent,
)
from workers.registry.state import Agent


@dataclass(frozen=True, slots=True)
class CheckSilence:
    """The sweeper's question: this agent was last heard at ``last_seen``; is it lost?"""

    agent_id: str
    last_seen: datetime
    lost_after_s: float


@dataclass(frozen=True, slots=True)
class HeartbeatSeen:
    """A heartbeat, as the sweeper's in-memory view keeps it."""

    heartbeat: Heartbeat


Command = RegisterAgent | DeregisterAgent | HeartbeatSeen | CheckSilence


def decide(
    state: Agent, command: Command, now: datetime, *, last_load: int | None = None
) -> list[Event]:
    """What happens to this agent. ``last_load`` is the load of its latest heartbeat."""
    match command:
        case RegisterAgent():
            return _register(state, command)
        case DeregisterAgent():
            return _deregister(state, command, last_load)
        case HeartbeatSeen():
            return _heartbeat(state, command.heartbeat)
        case CheckSilence():
            return _silence(state, command, now)
    raise TypeError(f"registry cannot decide {type(command).__name__}")


def _manifest(cmd: RegisterAgent) -> dict[str, object]:
    return {
        "agent_id": cmd.agent_id,
        "capabilities": cmd.capabilities,
        "capacity": cmd.capacity,
        "labels": dict(cmd.labels),
        "software_version": cmd.software_version,
        "heartbeat_interval_s": cmd.heartbeat_interval_s,
    }


def _same_manifest(state: Agent, cmd: RegisterAgent) -> bool:
    return (
        state.capabilities == tuple(cmd.capabilities)
        and state.capacity == cmd.capacity
        and state.labels == dict(cmd.labels)
        and state.software_version == cmd.software_version
        and state.heartbeat_interval_s == cmd.heartbeat_interval_s
    )


def _register(state: Agent, cmd: RegisterAgent) -> list[Event]:
    if state.status == "live":
        # identical registration is a no-op, so a retried or repeated register is idempotent
        return [] if _same_manifest(state, cmd) else [AgentUpdated.model_validate(_manifest(cmd))]
    # new, back after left/lost, or a draining agent that changed its mind: (re)join
    return [AgentJoined.model_validate(_manifest(cmd))]


def _deregister(state: Agent, cmd: DeregisterAgent, last_load: int | None) -> list[Event]:
    if not state.present:
        return []
    if not cmd.drain:
        return [AgentLeft(agent_id=state.agent_id)]
    events: list[Event] = []
    if state.status == "live":
        events.append(AgentDraining(agent_id=state.agent_id))
    if last_load == 0:
        # nothing running (as its last heartbeat said): nothing to wait for
        events.append(AgentLeft(agent_id=state.agent_id))
    return events


def _heartbeat(state: Agent, hb: Heartbeat) -> list[Event]:
    if state.status == "draining" and hb.load == 0:
        return [AgentLeft(agent_id=state.agent_id)]
    if state.status == "lost":
        # heard from again (a partition healed): it rejoins with its last manifest. Its old
        # work was handed back and its reports carry stale fencing tokens, so this is safe.
        return [
            AgentJoined(
                agent_id=state.agent_id,
                capabilities=state.capabilities,
                capacity=state.capacity,
                labels=dict(state.labels),
                software_version=state.software_version,
                heartbeat_interval_s=state.heartbeat_interval_s,
            )
        ]
    return []


def _silence(state: Agent, cmd: CheckSilence, now: datetime) -> list[Event]:
    if not state.present:
        return []  # already lost or gone: the race with another replica is decided
    silent = (now - cmd.last_seen).total_seconds()
    if silent < cmd.lost_after_s:
        return []
    return [AgentLost(agent_id=state.agent_id, last_seen_at=cmd.last_seen, silent_for_s=silent)]
