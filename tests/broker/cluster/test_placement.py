"""Adding placement arguments does not break queues an earlier deployment created.

RabbitMQ 3.10 compares x-quorum-initial-group-size and x-queue-leader-locator on
redeclare: without broker/placement.py, a deployment that starts naming its
cluster (or a CLI given one node of it) fails with PRECONDITION_FAILED.
Run on the shared broker, in a namespace of their own (RALLY_QUORUM_SIZE=1 turns
the placement on with one node).
"""

from __future__ import annotations

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_queue, declare_topology, delete_namespace
from broker.settings import BrokerSettings
from tests.support.fixtures.broker import known_queues

pytestmark = pytest.mark.broker


@pytest.mark.parametrize(("first", "then"), [(None, 1), (1, None)])
async def test_queues_keep_the_placement_they_were_created_with(
    broker_settings: BrokerSettings, first: int | None, then: int | None
) -> None:
    conns = [
        await BrokerConnection(
            broker_settings.model_copy(update={"quorum_size": size}), role="test"
        ).connect()
        for size in (first, then)
    ]
    try:
        for conn in conns:  # the second declares what the first created, differently
            await declare_topology(conn)
            channel = await conn.channel(confirms=False)
            queue = await declare_queue(conn, channel, conn.topology.work_queue("tasks"))
            assert queue.name.endswith(".q.tasks")
    finally:
        await delete_namespace(conns[0], known_queues(conns[0].topology))
        for conn in conns:
            await conn.close()
