"""The active registry learns what another replica wrote, so a wrongly lost agent comes back.

Found by the broker-restart fault test: after a connection blip a registry replica
that was no longer the active consumer still believed it was, stopped hearing the
agents and recorded them all lost, while the active replica kept them live in its
cache, so their heartbeats never rejoined them and nothing was placed again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from broker.router import Incoming
from contracts import AgentLost, Envelope, Heartbeat, Message, RegisterAgent
from workers.registry.handlers import Registry
from workers.runtime.clock import ManualClock
from workers.runtime.messages import new_event
from workers.runtime.settings import WorkerSettings
from workers.store import open_store

M = TypeVar("M", bound=Message)


def incoming(message: M) -> Incoming[M]:
    return Incoming(envelope=Envelope.wrap(message, sender="a1"))


async def test_an_agent_another_replica_declared_lost_rejoins_on_its_next_heartbeat(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/rally.db")
    await store.start()
    try:
        clock = ManualClock()
        registry = Registry(store, clock, WorkerSettings(store_url="unused"), replica="0")
        register = RegisterAgent(
            agent_id="a1", capabilities=("x",), capacity=1, heartbeat_interval_s=1.0
        )
        await registry.on_register(incoming(register))
        # a replica that briefly thought it was active, and heard nobody
        lost = AgentLost(agent_id="a1", last_seen_at=clock.now(), silent_for_s=3.0)
        await store.append("agent-a1", 1, [new_event(lost)])

        beat = Heartbeat(agent_id="a1", load=0)
        await registry.on_heartbeat(incoming(beat))
        await registry.sweep()  # nobody silent here: it only catches up with the store
        await registry.on_heartbeat(incoming(beat))

        types = [r.type for r in await store.read("agent-a1")]
        assert types == ["AgentJoined", "AgentLost", "AgentJoined"]
        assert registry.agents["a1"].status == "live"
    finally:
        await store.close()
