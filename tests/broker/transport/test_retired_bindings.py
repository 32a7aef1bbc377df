"""A binding an earlier release declared is removed when this release declares its queue."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.inspect import queue_depths
from tests.support.amqp import publish_bytes

pytestmark = pytest.mark.broker


async def test_the_allocator_no_longer_takes_heartbeats_after_an_upgrade(
    broker: BrokerConnection,
) -> None:
    spec = broker.topology.allocator_queue()
    earlier = replace(spec, bindings=(*spec.bindings, *spec.retired), retired=())
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, earlier)  # as the previous release left it
    commands = broker.topology.commands
    await publish_bytes(broker, commands, "registry.Heartbeat", b"beat")
    assert (await queue_depths(broker, [spec.name]))[spec.name] == 1

    await declare_queue(broker, channel, spec)  # this release starts
    await publish_bytes(broker, commands, "registry.Heartbeat", b"beat")
    await publish_bytes(broker, commands, "allocator.AcquireLease", b"lease")
    assert (await queue_depths(broker, [spec.name]))[spec.name] == 2  # the lease, not the beat
