"""An inbox's dead letters: one DLQ for every inbox, and each letter still names its inbox.

An agent rejects a delivery it cannot take (``nack`` without requeue, as one with its
own broker user does); RabbitMQ moves it to ``ns.inboxes.dlq`` with an ``x-death``
header naming the inbox. `rally dlq` shows it with its reason and that inbox, and a
replay puts it back in that inbox and no other.
"""

from __future__ import annotations

from uuid import uuid4

import aio_pika
import pytest

import contracts as c
from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.inspect import queue_stats
from tests.broker.dlq.conftest import Rally
from tests.broker.dlq.scenario import until
from tests.support.amqp import publish_bytes

pytestmark = pytest.mark.broker


def _assignment() -> bytes:
    task = c.AssignTask(
        task_id=uuid4(), capability="crawl", attempt=1, fencing_token=1, timeout_s=30
    )
    return c.encode(c.Envelope.wrap(task, sender="tasks"))


async def _reject_one(conn: BrokerConnection, inbox: str) -> None:
    """Take the one message in ``inbox`` and nack it without requeue, as an agent does."""
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        queue = await channel.get_queue(inbox, ensure=False)
        message = await queue.get(fail=True, no_ack=False)
        assert isinstance(message, aio_pika.abc.AbstractIncomingMessage)
        await message.nack(requeue=False)
    finally:
        await channel.close()


async def _depths(conn: BrokerConnection, names: list[str]) -> dict[str, int | None]:
    return {s.name: s.messages if s.exists else None for s in await queue_stats(conn, names)}


async def test_every_inbox_dead_letters_to_one_queue_and_a_replay_goes_back_to_its_inbox(
    broker: BrokerConnection, rally: Rally
) -> None:
    topology = broker.topology
    a, b = topology.inbox_queue("agent-a"), topology.inbox_queue("agent-b")
    assert a.dlq == b.dlq == topology.inbox_dlq
    channel = await broker.channel(confirms=False)
    for spec in (a, b):
        await declare_queue(broker, channel, spec)
    await publish_bytes(broker, topology.inbox, "agent-a", _assignment(), type="AssignTask")
    await _reject_one(broker, a.name)

    shared, own = topology.inbox_dlq, f"{a.name}.dlq"
    assert await _depths(broker, [shared, own, a.name]) == {shared: 1, own: None, a.name: 0}

    listed = (await rally("dlq", "list", "--json")).json()
    assert [(row["queue"], row["reason"], row["type"]) for row in listed] == [
        (a.name, "nacked", "AssignTask")
    ]
    report = (await rally("dlq", "replay", listed[0]["id"], "--by", "ops", "--json")).json()
    assert [r["outcome"] for r in report["results"]] == ["replayed"]

    async def back_in_its_inbox() -> bool:
        depths = await _depths(broker, [a.name, b.name, shared])
        return depths == {a.name: 1, b.name: 0, shared: 0}

    await until(back_in_its_inbox, timeout=10)
