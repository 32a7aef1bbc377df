"""Two registry shards on the real broker and one store: each agent is its own shard's alone.

Agents publish under their slot's routing key (the SDK's publisher), so each shard hears
only its own; an unslotted command (an agent that does not hash) reaches shard 0, which
forwards it, acting for its first sender and nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker import headers as h
from broker.connection import BrokerConnection
from broker.publisher import Publisher
from broker.router import Incoming
from contracts import Envelope, Heartbeat, RegisterAgent
from tests.support.amqp import depth, take
from tests.support.history import History
from tests.support.rabbit_users import Users
from tests.support.rabbit_users import users as users  # the fixture: provisioned agent users
from workers.registry.handlers import Registry
from workers.registry.service import RegistryService
from workers.registry.shards import Shard
from workers.registry.state import stream_of
from workers.runtime.services import Running, run_services
from workers.runtime.settings import WorkerSettings

pytestmark = pytest.mark.broker

SHARDS = 2


def shard_settings(settings: WorkerSettings, shard: int, shards: int = SHARDS) -> WorkerSettings:
    return settings.model_copy(update={"registry_shard": shard, "registry_shards": shards})


def agent_of(shard: int, prefix: str, shards: int = SHARDS) -> str:
    """A fresh agent id that shard ``shard`` of ``shards`` owns."""
    owner = Shard(shard, shards)
    while not owner.owns(candidate := f"{prefix}-{uuid.uuid4().hex[:6]}"):
        pass
    return candidate


def register(agent_id: str) -> RegisterAgent:
    return RegisterAgent(agent_id=agent_id, capabilities=("x",), capacity=1)


def service(running: Running) -> RegistryService:
    found = running.services["registry"]
    assert isinstance(found, RegistryService)
    return found


def registry(running: Running) -> Registry:
    return service(running).registry


@pytest.fixture
async def shards(
    broker: BrokerConnection, worker_settings: WorkerSettings
) -> AsyncIterator[list[Running]]:
    """Registry shards 0 and 1 of 2, one replica each (``s0``, ``s1``), in this process."""
    for name in broker.topology.registry_queues(SHARDS)[1:]:
        broker.test_queues += [name, f"{name}.dlq"]  # type: ignore[attr-defined]
    async with contextlib.AsyncExitStack() as stack:
        running = [
            await stack.enter_async_context(
                run_services(
                    shard_settings(worker_settings, k), workers=["registry"], replica=f"s{k}"
                )
            )
            for k in range(SHARDS)
        ]
        yield running


@pytest.fixture
def history(shards: list[Running]) -> History:
    return History(shards[0])


async def recorded_by(history: History, agent_id: str) -> list[tuple[str, str | None]]:
    """(event type, replica that appended it) for each record of the agent's stream."""
    records = await history.store.read(stream_of(agent_id))
    return [(r.type, r.metadata.get("replica")) for r in records]


async def wait_types(
    history: History, agent_id: str, types: list[str], timeout: float = 10
) -> None:
    async def done() -> bool:
        return await history.types(f"agent-{agent_id}") == types

    await history.wait(done, timeout=timeout)


async def test_each_agent_is_recorded_and_heard_by_its_own_shard_only(
    shards: list[Running], history: History, agents: Any
) -> None:
    ids = [agent_of(0, "own0"), agent_of(1, "own1")]
    for agent_id in ids:
        await agents(agent_id, heartbeat_s=0.2)
    for agent_id in ids:
        await wait_types(history, agent_id, ["AgentJoined"])
    await asyncio.sleep(0.5)  # heartbeats have arrived
    for k, agent_id in enumerate(ids):
        assert await recorded_by(history, agent_id) == [("AgentJoined", f"s{k}")]
        mine, other = registry(shards[k]), registry(shards[1 - k])
        assert agent_id in mine.agents
        assert agent_id in mine.last_seen
        assert agent_id not in other.agents
        assert agent_id not in other.last_seen
        assert service(shards[k]).forwarder.forwarded == 0  # slotted keys go straight there
    for name in shards[0].conn.topology.registry_queues(SHARDS):
        assert await depth(shards[0].conn, f"{name}.dlq") == 0


async def test_an_unslotted_command_is_forwarded_to_its_shard_and_recorded_once(
    broker: BrokerConnection, shards: list[Running], history: History, publisher: Publisher
) -> None:
    agent_id = agent_of(1, "legacy")
    command = register(agent_id)
    envelope = Envelope.wrap(command, sender="an-older-agent")
    commands = broker.topology.commands
    # as an agent of an earlier release (or one that does not hash) sends it
    await publisher.publish(envelope, exchange=commands, routing_key="registry.RegisterAgent")
    beat = Envelope.wrap(Heartbeat(agent_id=agent_id, load=0), sender="an-older-agent")
    await publisher.publish(beat, exchange=commands, routing_key="registry.Heartbeat")
    await wait_types(history, agent_id, ["AgentJoined"])
    await asyncio.sleep(0.3)  # a second copy would be recorded by now
    records = await history.store.read(stream_of(agent_id))
    assert [(r.type, r.metadata["replica"]) for r in records] == [("AgentJoined", "s1")]
    assert records[0].metadata["message_id"] == str(envelope.id)  # the same message
    assert records[0].metadata["correlation_id"] == str(envelope.correlation_id)
    assert service(shards[0]).forwarder.forwarded == 2
    assert agent_id in registry(shards[1]).last_seen  # its heartbeat reached its shard
    assert agent_id not in registry(shards[0]).agents


async def test_a_forwarded_copy_acts_for_its_first_sender_and_nobody_else(
    broker: BrokerConnection,
    shards: list[Running],
    history: History,
    users: Users,
) -> None:
    role = next(
        r for r in (f"fw{i}" for i in range(200)) if Shard(1, 2).owns(f"sec-{users.run}-{r}")
    )
    me = await users.provision(role)
    agent_id = me.grant.agent_id
    victim = agent_of(1, "victim")
    commands = broker.topology.commands
    conn = await BrokerConnection(users.settings_of(me), role=agent_id).connect()
    try:
        own = await Publisher(conn, sender=agent_id).start()
        assert own.user_id == agent_id
        mine = Envelope.wrap(register(agent_id), sender=agent_id)
        await own.publish(mine, exchange=commands, routing_key="registry.RegisterAgent")
        forged = Envelope.wrap(register(victim), sender=agent_id)
        await own.publish(forged, exchange=commands, routing_key="registry.RegisterAgent")
    finally:
        await conn.close()
    await wait_types(history, agent_id, ["AgentJoined"])
    record = (await history.store.read(f"agent-{agent_id}"))[0]
    assert (record.metadata["replica"], record.metadata["sender"]) == ("s1", agent_id)
    # the forged one is refused where it arrived, before any forwarding
    refused = await take(broker, f"{broker.topology.registry_queue(0, 2).name}.dlq", 1)
    assert [(t.message_id, t.headers[h.DL_REASON]) for t in refused] == [
        (str(forged.id), "security")
    ]
    # and a copy forwarded for that sender (shard 0's forwarder, by the workers' own user)
    # still acts for it: shard 1 refuses it too
    incoming = Incoming(envelope=forged, user_id=agent_id, principal=agent_id)
    assert await service(shards[0]).forwarder(incoming, victim)
    letters = await take(broker, f"{broker.topology.registry_queue(1, 2).name}.dlq", 1)
    assert [(t.message_id, t.headers[h.DL_REASON]) for t in letters] == [
        (str(forged.id), "security")
    ]
    assert letters[0].headers[h.ORIGINAL_USER_ID] == agent_id
    assert await history.types(f"agent-{victim}") == []


async def test_a_silent_agent_is_lost_to_its_shard_and_the_other_shard_loses_nobody(
    shards: list[Running], history: History, agents: Any
) -> None:
    steady = [agent_of(0, "steady0"), agent_of(1, "steady1")]
    for agent_id in steady:
        await agents(agent_id, heartbeat_s=0.2)
    quiet = [await agents(agent_of(k, f"quiet{k}"), heartbeat_s=0.2) for k in range(SHARDS)]
    for agent_id in [*steady, *(a.agent_id for a in quiet)]:
        await wait_types(history, agent_id, ["AgentJoined"])
    for agent in quiet:
        agent.silence()
    for k, agent in enumerate(quiet):
        await wait_types(history, agent.agent_id, ["AgentJoined", "AgentLost"])
        assert (await recorded_by(history, agent.agent_id))[-1] == ("AgentLost", f"s{k}")
    await asyncio.sleep(1.5)  # a few more windows: a shard that swept the other's would strike
    for agent_id in steady:
        assert await history.types(f"agent-{agent_id}") == ["AgentJoined"]


async def test_with_one_shard_the_registry_takes_slotted_and_unslotted_keys_as_before(
    broker: BrokerConnection, worker_settings: WorkerSettings, publisher: Publisher
) -> None:
    async with run_services(worker_settings, workers=["registry"], replica="0") as running:
        history = History(running)
        assert service(running).consumer.spec.name == broker.topology.worker_queue("registry")
        slotted, unslotted = agent_of(1, "slotted"), agent_of(1, "unslotted")
        await publisher.send(register(slotted))
        plain = Envelope.wrap(register(unslotted), sender="old")
        await publisher.publish(
            plain, exchange=broker.topology.commands, routing_key="registry.RegisterAgent"
        )
        for agent_id in (slotted, unslotted):
            await wait_types(history, agent_id, ["AgentJoined"])
        assert service(running).forwarder.forwarded == 0


async def test_fewer_shards_unbind_the_queues_no_shard_runs(
    broker: BrokerConnection, worker_settings: WorkerSettings, publisher: Publisher
) -> None:
    """Two shards, then one: shard 1's queue no longer takes a copy of its slots' commands."""
    left = broker.topology.registry_queue(1, 2).name
    broker.test_queues += [left, f"{left}.dlq"]  # type: ignore[attr-defined]
    for k in range(SHARDS):
        async with run_services(
            shard_settings(worker_settings, k), workers=["registry"], replica="x"
        ):
            pass
    assert await depth(broker, left) == 0  # it exists, bound to shard 1's slots
    async with run_services(worker_settings, workers=["registry"], replica="0") as running:
        agent_id = agent_of(1, "moved")
        await publisher.send(register(agent_id))  # under its slot's key
        await wait_types(History(running), agent_id, ["AgentJoined"])
    assert await depth(broker, left) == 0  # unbound: no copy left behind for nobody
