"""A registry cut off from the broker declares nobody lost (issue 17: it declared every
agent lost 12-13 s into a broker outage, while it could hear no one)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from broker.router import Incoming
from contracts import Envelope, Heartbeat, Message, RegisterAgent
from workers.registry.handlers import Registry
from workers.runtime.clock import ManualClock
from workers.runtime.settings import WorkerSettings
from workers.store import open_store

M = TypeVar("M", bound=Message)


def _incoming(message: M, sender: str) -> Incoming[M]:
    return Incoming(envelope=Envelope.wrap(message, sender=sender))


async def test_no_agent_is_declared_lost_while_the_registry_is_cut_off(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/rally.db")
    await store.start()
    try:
        clock = ManualClock()
        registry = Registry(store, clock, WorkerSettings(store_url="unused"), replica="0")
        up = [True]
        registry.broker_up = lambda: up[0]
        for agent in ("a1", "a2"):
            register = RegisterAgent(
                agent_id=agent, capabilities=("x",), capacity=1, heartbeat_interval_s=1.0
            )
            await registry.on_register(_incoming(register, agent))

        up[0] = False  # the connection is lost: nothing is heard from anyone
        clock.advance(30.0)
        assert await registry.sweep() == 0
        up[0] = True  # back: the heartbeats held meanwhile get a window to arrive
        assert await registry.sweep() == 0
        await registry.on_heartbeat(_incoming(Heartbeat(agent_id="a2", load=0), "a2"))
        clock.advance(10.0)  # and silence after that is silence
        await registry.on_heartbeat(_incoming(Heartbeat(agent_id="a2", load=0), "a2"))
        assert await registry.sweep() == 1

        types = [r.type for r in await store.read("agent-a1")]
        assert types == ["AgentJoined", "AgentLost"]
    finally:
        await store.close()
