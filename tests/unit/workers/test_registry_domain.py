"""The agent aggregate, without a broker: register, drain, silence."""

from __future__ import annotations

from datetime import timedelta

from contracts import (
    AgentDraining,
    AgentJoined,
    AgentLeft,
    AgentLost,
    AgentUpdated,
    DeregisterAgent,
    Heartbeat,
    RegisterAgent,
)
from workers.registry.domain import CheckDrained, CheckSilence, HeartbeatSeen, decide
from workers.registry.state import Agent, fold
from workers.runtime.clock import ManualClock

clock = ManualClock()
REG = RegisterAgent(agent_id="a", capabilities=("x",), capacity=2)


def live() -> Agent:
    return fold("a", decide(Agent("a"), REG, clock.now()))


def test_register_joins_then_is_idempotent_then_updates() -> None:
    assert [type(e) for e in decide(Agent("a"), REG, clock.now())] == [AgentJoined]
    assert decide(live(), REG, clock.now()) == []
    changed = REG.model_copy(update={"capacity": 3})
    assert [type(e) for e in decide(live(), changed, clock.now())] == [AgentUpdated]


def test_lost_or_left_agent_rejoins() -> None:
    lost = fold(
        "a", [*decide(Agent("a"), REG, clock.now()), AgentLost(agent_id="a", silent_for_s=9)]
    )
    assert [type(e) for e in decide(lost, REG, clock.now())] == [AgentJoined]


def test_silence_past_window_is_lost_once() -> None:
    seen = clock.now()
    check = CheckSilence("a", seen, lost_after_s=3)
    assert decide(live(), check, seen + timedelta(seconds=2.9)) == []
    events = decide(live(), check, seen + timedelta(seconds=3))
    assert [type(e) for e in events] == [AgentLost]
    # the second replica, having reloaded, sees it lost and decides nothing
    assert decide(fold("a", [*decide(Agent("a"), REG, seen), *events]), check, seen) == []


def test_drain_waits_until_the_task_history_gives_it_nothing() -> None:
    drain = DeregisterAgent(agent_id="a", drain=True)
    assert [type(e) for e in decide(live(), drain, clock.now(), held=1)] == [AgentDraining]
    draining = fold("a", [*decide(Agent("a"), REG, clock.now()), AgentDraining(agent_id="a")])
    idle = HeartbeatSeen(Heartbeat(agent_id="a", load=0))
    # its heartbeat says load 0 (a task started after it): the history decides, not the beat
    assert decide(draining, idle, clock.now(), held=1) == []
    assert decide(draining, idle, clock.now()) == []  # not known: wait
    assert [type(e) for e in decide(draining, idle, clock.now(), held=0)] == [AgentLeft]
    assert [type(e) for e in decide(draining, CheckDrained("a"), clock.now(), held=0)] == [
        AgentLeft
    ]
    assert decide(live(), CheckDrained("a"), clock.now(), held=0) == []


def test_drain_with_nothing_running_leaves_at_once_and_no_drain_leaves_now() -> None:
    drain = DeregisterAgent(agent_id="a", drain=True)
    events = decide(live(), drain, clock.now(), held=0)
    assert [type(e) for e in events] == [AgentDraining, AgentLeft]
    now = DeregisterAgent(agent_id="a", drain=False)
    assert [type(e) for e in decide(live(), now, clock.now(), held=5)] == [AgentLeft]


def test_a_drained_agents_goodbye_waits_for_its_last_reports() -> None:
    draining = fold("a", [*decide(Agent("a"), REG, clock.now()), AgentDraining(agent_id="a")])
    goodbye = DeregisterAgent(agent_id="a", drain=False)
    # its last report is still on its way to the task manager: handing the task back would
    # lose its result, so it stays draining until the history gives it nothing
    assert decide(draining, goodbye, clock.now(), held=1) == []
    assert decide(draining, goodbye, clock.now()) == []
    assert [type(e) for e in decide(draining, goodbye, clock.now(), held=0)] == [AgentLeft]
    assert [type(e) for e in decide(draining, CheckDrained("a"), clock.now(), held=0)] == [
        AgentLeft
    ]
