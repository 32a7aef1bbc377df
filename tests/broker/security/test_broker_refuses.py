"""What the broker refuses an agent's own user: other inboxes, other exchanges, other names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.publisher import Publisher
from contracts import AssignTask, Envelope, Heartbeat, Message, ReportTaskSucceeded, encode
from tests.support.amqp import depth, take
from tests.support.rabbit_users import Users, refusal

pytestmark = pytest.mark.broker


@dataclass
class Pair:
    victim: str
    attacker: str
    conn: BrokerConnection  # logged in as the attacker


@pytest.fixture
async def pair(users: Users) -> AsyncIterator[Pair]:
    victim, attacker = await asyncio.gather(users.provision("victim"), users.provision("mallory"))
    conn = await BrokerConnection(users.settings_of(attacker), role="attacker").connect()
    yield Pair(victim.grant.agent_id, attacker.grant.agent_id, conn)
    await conn.close()


def amqp_message(payload: Message, *, user_id: str) -> aio_pika.Message:
    body = encode(Envelope.wrap(payload, sender=user_id))
    return aio_pika.Message(
        body, message_id=str(uuid4()), type=payload.type_name(), user_id=user_id
    )


def heartbeat(agent_id: str, *, user_id: str) -> aio_pika.Message:
    return amqp_message(Heartbeat(agent_id=agent_id, load=0), user_id=user_id)


def report(agent_id: str, *, user_id: str) -> aio_pika.Message:
    done = ReportTaskSucceeded(task_id=uuid4(), agent_id=agent_id, attempt=1, fencing_token=1)
    return amqp_message(done, user_id=user_id)


async def leave_it(message: AbstractIncomingMessage) -> None:
    await message.reject(requeue=True)


def publish(exchange: str, key: str, message: aio_pika.Message) -> Any:
    async def run(channel: AbstractChannel) -> None:
        target = (
            channel.default_exchange
            if exchange == ""
            else await channel.get_exchange(exchange, ensure=False)
        )
        await target.publish(message, key, mandatory=False)

    return run


async def test_a_user_id_other_than_the_login_is_refused_and_reaches_no_queue(
    pair: Pair, broker: BrokerConnection
) -> None:
    topology = broker.topology
    tasks = topology.worker_queue("tasks")
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, topology.work_queue("tasks"))
    key = "tasks.ReportTaskSucceeded"
    forged = publish(topology.commands, key, report(pair.victim, user_id=pair.victim))
    error = await refusal(pair.conn, forged)
    assert "PRECONDITION_FAILED" in error
    assert f"user_id property set to '{pair.victim}'" in error

    # the same publish under its own name goes through: only the forgery was refused
    own = publish(topology.commands, key, report(pair.victim, user_id=pair.attacker))
    assert await refusal(pair.conn, own) == ""
    (arrived,) = await take(broker, tasks, 1)
    assert arrived.user_id == pair.attacker
    assert await depth(broker, tasks) == 0


async def test_an_agent_cannot_consume_or_get_another_agents_inbox(
    pair: Pair, broker: BrokerConnection, publisher: Publisher
) -> None:
    assign = AssignTask(task_id=uuid4(), capability="c", attempt=1, fencing_token=1, timeout_s=5)
    await publisher.send(assign, to=pair.victim)
    victim_inbox = broker.topology.inbox_queue(pair.victim).name
    own_inbox = broker.topology.inbox_queue(pair.attacker).name

    def consume(name: str) -> Any:
        async def run(channel: AbstractChannel) -> None:
            queue = await channel.get_queue(name, ensure=False)
            await queue.consume(leave_it)

        return run

    async def get(channel: AbstractChannel) -> None:
        queue = await channel.get_queue(victim_inbox, ensure=False)
        await queue.get(fail=False, no_ack=True)

    async def bind_own_inbox_to_victims_key(channel: AbstractChannel) -> None:
        queue = await channel.get_queue(own_inbox, ensure=False)
        await queue.bind(broker.topology.inbox, routing_key=pair.victim)

    for operation in (consume(victim_inbox), get, bind_own_inbox_to_victims_key):
        error = await refusal(pair.conn, operation)
        assert "ACCESS_REFUSED" in error, error
    assert await refusal(pair.conn, consume(own_inbox)) == ""  # its own, it may
    assert await depth(broker, victim_inbox) == 1


async def test_an_agent_publishes_agent_commands_and_nothing_else(
    pair: Pair, broker: BrokerConnection
) -> None:
    topology = broker.topology
    victim_inbox = topology.inbox_queue(pair.victim).name
    message = heartbeat(pair.attacker, user_id=pair.attacker)
    refused = {
        "default exchange": publish("", victim_inbox, message),
        "inbox exchange": publish(topology.inbox, pair.victim, message),
        "events exchange": publish(topology.events, "agent.AgentLeft", message),
        "dead-letter exchange": publish(topology.dlx, topology.worker_queue("tasks"), message),
        "retry exchange": publish(topology.retry, f"t100ms.{victim_inbox}", message),
        "another route": publish(topology.commands, "events.Heartbeat", message),
    }
    for what, operation in refused.items():
        error = await refusal(pair.conn, operation)
        assert "ACCESS_REFUSED" in error, (what, error)
    assert "amq.default" in await refusal(pair.conn, refused["default exchange"])
    for key in ("registry.Heartbeat", "tasks.ReportTaskSucceeded", "allocator.AcquireLease"):
        assert await refusal(pair.conn, publish(topology.commands, key, message)) == "", key
    assert await depth(broker, victim_inbox) == 0
