"""The registry over the real broker and store: joins, drains, and silence found exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.connection import BrokerConnection
from contracts import RegisterAgent
from tests.support.history import History
from workers.registry.handlers import Registry
from workers.runtime.clock import ManualClock
from workers.runtime.services import Running, run_services
from workers.runtime.settings import WorkerSettings

pytestmark = pytest.mark.broker


async def test_register_again_is_idempotent_and_a_change_updates(
    history: History, agents: Any
) -> None:
    agent = await agents("r1", capabilities=("x",), capacity=1)
    await agent.register()
    await agent.register()
    await agent.send(RegisterAgent(agent_id="r1", capabilities=("x", "y"), capacity=1))

    async def updated() -> bool:
        return "AgentUpdated" in await history.types("agent-r1")

    await history.wait(updated)
    await asyncio.sleep(0.3)  # any late duplicate would show by now
    assert await history.types("agent-r1") == ["AgentJoined", "AgentUpdated"]


async def test_silence_is_lost_exactly_once_with_two_replicas(
    fleet: Running, history: History, agents: Any, worker_settings: WorkerSettings
) -> None:
    async with run_services(worker_settings, workers=["registry"], replica="1"):
        agent = await agents("quiet", heartbeat_s=0.2)

        async def joined() -> bool:
            return await history.types("agent-quiet") == ["AgentJoined"]

        await history.wait(joined)
        agent.silence()

        async def lost() -> bool:
            return "AgentLost" in await history.types("agent-quiet")

        await history.wait(lost, timeout=5)
        await asyncio.sleep(1.0)  # two more windows: a second replica would have struck
        assert await history.types("agent-quiet") == ["AgentJoined", "AgentLost"]


async def test_two_racing_sweepers_record_one_loss(
    broker: BrokerConnection, fleet: Running, history: History, worker_settings: WorkerSettings
) -> None:
    """Both replicas believe they are active and sweep at the same instant."""
    await fleet.publisher.send(
        RegisterAgent(agent_id="race", capabilities=("x",), capacity=1, heartbeat_interval_s=1)
    )

    async def joined() -> bool:
        return await history.types("agent-race") == ["AgentJoined"]

    await history.wait(joined)
    clock = ManualClock()
    replicas = [Registry(fleet.store, clock, worker_settings, replica=str(i)) for i in (7, 8)]  # type: ignore[arg-type]
    for registry in replicas:
        await registry.load_present()
        registry.active = True
    clock.advance(10)
    counts = await asyncio.gather(*(r.sweep() for r in replicas))
    assert sorted(counts) == [0, 1]
    assert await history.types("agent-race") == ["AgentJoined", "AgentLost"]


async def test_drain_with_nothing_running_leaves(history: History, agents: Any) -> None:
    agent = await agents("drainer")

    async def joined() -> bool:
        return await history.types("agent-drainer") == ["AgentJoined"]

    await history.wait(joined)
    await asyncio.sleep(0.4)  # a heartbeat with load 0 has arrived
    await agent.deregister(drain=True)

    async def left() -> bool:
        return "AgentLeft" in await history.types("agent-drainer")

    await history.wait(left)
    assert await history.types("agent-drainer") == ["AgentJoined", "AgentDraining", "AgentLeft"]
