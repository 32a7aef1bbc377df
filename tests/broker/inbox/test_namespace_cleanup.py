"""Removing a namespace removes the DLQs its queues share: nobody has to list them."""

from __future__ import annotations

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_queue, declare_topology, delete_namespace
from broker.inspect import queue_stats
from broker.settings import BrokerSettings

pytestmark = pytest.mark.broker


async def test_delete_namespace_takes_the_inboxes_shared_dlq_with_it(
    broker_settings: BrokerSettings,
) -> None:
    conn = await BrokerConnection(broker_settings, role="test").connect()
    try:
        await declare_topology(conn)
        topology = conn.topology
        inbox = topology.inbox_queue("cleanup-agent")
        channel = await conn.channel(confirms=False)
        try:
            await declare_queue(conn, channel, inbox)
        finally:
            await channel.close()
        shared = [topology.inbox_dlq, topology.shared_dlq]
        assert (await queue_stats(conn, [topology.inbox_dlq]))[0].exists
        delays = [q.name for q in topology.delay_queues()]
        await delete_namespace(conn, [inbox.name, *delays])  # the shared DLQs are not named
        left = await queue_stats(conn, [inbox.name, *shared])
        assert [s.name for s in left if s.exists] == []
    finally:
        await conn.close()
