"""broker.tap on the real broker: an observer gets copies, the work queue keeps its messages."""

from __future__ import annotations

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.inspect import queue_depths, queue_stats
from broker.queue_reader import QueuedMessage
from broker.tap import Tap
from tests.support.amqp import eventually, publish_bytes

pytestmark = pytest.mark.broker


async def test_the_dashboard_tap_gets_copies_of_heartbeats_only(broker: BrokerConnection) -> None:
    registry = broker.topology.work_queue("registry")
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, registry)
    seen: list[bytes] = []

    def observe(message: QueuedMessage) -> None:
        seen.append(bytes(message.body))

    tap = await Tap(broker, broker.topology.dashboard_tap_queue("t1"), observe).start()
    try:
        commands = broker.topology.commands
        await publish_bytes(broker, commands, "registry.Heartbeat", b"beat")
        await publish_bytes(broker, commands, "registry.RegisterAgent", b"register")
        await eventually(lambda: seen == [b"beat"])
        # the registry's own queue still holds both: the tap took nothing from it
        assert (await queue_depths(broker, [registry.name]))[registry.name] == 2
    finally:
        await tap.stop()
    # the tap's queue goes with its channel
    [stats] = await queue_stats(broker, [broker.topology.dashboard_tap_queue("t1").name])
    assert not stats.exists


def test_a_tap_refuses_a_shared_work_queue(broker: BrokerConnection) -> None:
    with pytest.raises(ValueError, match="private"):
        Tap(broker, broker.topology.work_queue("registry"), lambda m: None)
