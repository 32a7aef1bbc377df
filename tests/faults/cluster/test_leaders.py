"""New quorum queues' leaders spread over a cluster's nodes (x-queue-leader-locator:
balanced), not all on the node the declaring connection is on (issue 17: all 18 of a
namespace were on node 1). Named to run before the node-loss tests: "balanced" counts
every leader in the cluster, and those tests move leaders about."""

from __future__ import annotations

import asyncio

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.settings import BrokerSettings
from tests.support.cluster import PrivateCluster
from tests.support.fixtures.broker import known_queues

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_leaders_of_new_queues_are_spread_over_the_nodes(cluster: PrivateCluster) -> None:
    settings = BrokerSettings(amqp_url=cluster.url, namespace="rt-spread")
    conn = await BrokerConnection(settings, role="test").connect()
    try:
        await declare_topology(conn)  # five delay queues, from one connection on one node
        leaders = await asyncio.to_thread(cluster.leaders, "rt-spread.delay.")
        assert len(leaders) == 5
        assert len(set(leaders.values())) == 3, leaders
    finally:
        await delete_namespace(conn, known_queues(conn.topology))
        await conn.close()
