"""What happens to an agent (stream ``agent-<id>``): pure decide, no I/O.

Its state and its one fold are in workers/registry/state.py. A left or lost
agent that registers again joins afresh. Heartbeats are not events: the
service keeps the last one in memory and asks ``decide`` only when it matters
(a draining agent that may be done, a lost agent heard from again).

A draining agent leaves when the task history says it holds nothing (``held``,
workers/registry/holdings.py), never on its heartbeat's word: a task started
after the last beat would be handed back while it still runs. Its final goodbye
(``drain: false``) is taken the same way: the reports sent just before it travel
through another queue and may not be recorded yet.
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


@dataclass(frozen=True, slots=True)
class CheckDrained:
    """Is this draining agent done? (asked on its heartbeats and by the sweeper)"""

    agent_id: str


Command = RegisterAgent | DeregisterAgent | HeartbeatSeen | CheckSilence | CheckDrained


def decide(
    state: Agent, command: Command, now: datetime, *, held: int | None = None
) -> list[Event]:
    """What happens to this agent. ``held``: how many tasks the task history gives it
    now (None: not known, so a draining agent does not leave on this decision)."""
    match command:
        case RegisterAgent():
            return _register(state, command)
        case DeregisterAgent():
            return _deregister(state, command, held)
        case HeartbeatSeen():
            return _heartbeat(state, command.heartbeat, held)
        case CheckDrained():
            return _drained(state, held)
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
        "bundles": cmd.bundles,
    }


def _same_manifest(state: Agent, cmd: RegisterAgent) -> bool:
    return (
        state.capabilities == tuple(cmd.capabilities)
        and state.capacity == cmd.capacity
        and state.labels == dict(cmd.labels)
        and state.software_version == cmd.software_version
        and state.heartbeat_interval_s == cmd.heartbeat_interval_s
        and state.bundles == cmd.bundles
    )


def _register(state: Agent, cmd: RegisterAgent) -> list[Event]:
    if state.status == "live":
        # identical registration is a no-op, so a retried or repeated register is idempotent
        return [] if _same_manifest(state, cmd) else [AgentUpdated.model_validate(_manifest(cmd))]
    # new, back after left/lost, or a draining agent that changed its mind: (re)join
    return [AgentJoined.model_validate(_manifest(cmd))]


def _deregister(state: Agent, cmd: DeregisterAgent, held: int | None) -> list[Event]:
    if not state.present:
        return []
    if not cmd.drain:
        if state.status == "draining" and held != 0:
            # a drained agent's goodbye: its last reports (to the task manager's queue) may
            # still be on their way, and handing those tasks back would lose their results.
            # It leaves once the history gives it nothing (the sweeper asks), or is lost.
            return []
        return [AgentLeft(agent_id=state.agent_id)]
    events: list[Event] = []
    if state.status == "live":
        events.append(AgentDraining(agent_id=state.agent_id))
    if held == 0:
        # the task history gives it nothing: nothing to wait for
        events.append(AgentLeft(agent_id=state.agent_id))
    return events


def _drained(state: Agent, held: int | None) -> list[Event]:
    if state.status == "draining" and held == 0:
        return [AgentLeft(agent_id=state.agent_id)]
    return []


def _heartbeat(state: Agent, hb: Heartbeat, held: int | None) -> list[Event]:
    if state.status == "draining":
        return _drained(state, held)
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
                bundles=state.bundles,
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
