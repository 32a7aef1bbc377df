"""broker.queue_reader on the real broker: deliveries come unsettled; the taker settles."""

from __future__ import annotations

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.inspect import queue_depths
from broker.queue_reader import Delivery, QueueReader, taking
from broker.topology import QueueSpec
from tests.support.amqp import eventually, publish_bytes

pytestmark = pytest.mark.broker


async def _queue_with(broker: BrokerConnection, bodies: list[bytes]) -> QueueSpec:
    spec = broker.topology.work_queue("test")
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, spec)
    for n, body in enumerate(bodies):
        await publish_bytes(broker, broker.topology.commands, "test.X", body, message_id=f"m{n}")
    return spec


async def _ready(broker: BrokerConnection, name: str) -> int:
    return (await queue_depths(broker, [name]))[name]


async def test_taking_gets_one_at_a_time_and_returns_what_was_not_acked(
    broker: BrokerConnection,
) -> None:
    spec = await _queue_with(broker, [b"a", b"b", b"c"])
    async with taking(broker, spec.name) as taker:
        first = await taker.take()
        second = await taker.take()
        assert first is not None
        assert second is not None
        assert [bytes(first.body), bytes(second.body)] == [b"a", b"b"]
        assert first.routing_key == "test.X"
        await first.ack()
    # the second was neither acked nor nacked: closing hands it back
    assert await _ready(broker, spec.name) == 2
    async with taking(broker, spec.name) as taker:
        taken = [await taker.take() for _ in range(3)]
        assert [bytes(d.body) for d in taken if d is not None] == [b"b", b"c"]
        assert taken[2] is None  # empty now: None, not an error
        for delivery in taken:
            if delivery is not None:
                await delivery.nack(requeue=True)
    assert await _ready(broker, spec.name) == 2


async def test_taking_from_a_missing_queue_says_so(broker: BrokerConnection) -> None:
    from broker.errors import TopologyError

    with pytest.raises(TopologyError):
        async with taking(broker, f"{broker.topology.namespace}.nope"):
            pass


async def test_a_reader_hands_over_deliveries_unsettled_until_the_receiver_settles(
    broker: BrokerConnection,
) -> None:
    spec = await _queue_with(broker, [b"a", b"b"])
    received: list[Delivery] = []

    async def receive(delivery: Delivery) -> None:
        received.append(delivery)

    reader = await QueueReader(broker, prefetch=10).open()
    try:
        await reader.follow(spec.name, receive)
        assert reader.following == [spec.name]
        await eventually(lambda: len(received) == 2)
        # both taken, neither settled: nothing ready, both still in the queue
        assert await _ready(broker, spec.name) == 0
        await received[0].ack()
        await reader.unfollow(spec.name)
        assert reader.following == []
        # a message sent after unfollow stays in the queue for someone else
        await publish_bytes(broker, broker.topology.commands, "test.X", b"c")
        async with taking(broker, spec.name) as taker:
            later = await taker.take()
            assert later is not None
            assert bytes(later.body) == b"c"
            await later.ack()
        assert len(received) == 2
    finally:
        await reader.close()
    # the unsettled one went back when the reader closed; the acked one is gone
    assert await _ready(broker, spec.name) == 1
