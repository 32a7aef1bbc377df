"""A publisher whose channel first meets a quorum queue just as the queue's leader is
killed gets through once a new leader is elected, while the killed node is still down.

RabbitMQ 3.10: a channel's quorum queue client is set up at its first publish to the
queue, with the queue's leader as then recorded (the dead node) first in its list; until
it has registered as an enqueuer it asks that node for its version at every publish,
gets ``nodedown`` and nacks, for as long as the node stays down, even once the record
names the new leader. A channel that published before the kill, or one opened after the
election, is not affected. This is what a process whose connection was on the killed
node meets: its connection and channels are new. An agent's reports to the tasks queue
were nacked for over a minute (the node-loss test's "silent" agents, which kept
heartbeating: the registry queue had another leader). The publisher answers a nack with
a fresh channel (broker/publisher.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_queue, declare_topology, delete_namespace
from broker.errors import PublishFailed
from broker.publisher import Publisher
from broker.settings import BrokerSettings
from contracts import ReportTaskStarted
from tests.support.cluster import PrivateCluster
from tests.support.fixtures.broker import known_queues

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(300)]

NAMESPACE = "rt-qqpub"
GIVE_UP_S = 60.0  # without the fix it stays nacked until the node is back: never, here


async def send_until_confirmed(publisher: Publisher, give_up_s: float) -> int:
    """Send one report, again after each failure, as the SDK does; the attempts it took."""
    deadline = time.monotonic() + give_up_s
    report = ReportTaskStarted(task_id=uuid.uuid4(), agent_id="a", attempt=1, fencing_token=1)
    attempts = 0
    while True:
        attempts += 1
        try:
            await publisher.send(report)
            return attempts
        except PublishFailed:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_a_channel_new_as_the_leader_dies_gets_through_while_its_node_is_down(
    cluster: PrivateCluster,
) -> None:
    everywhere = BrokerSettings(amqp_url=cluster.url, namespace=NAMESPACE)
    admin = await BrokerConnection(everywhere, role="test-admin").connect()
    spec = admin.topology.work_queue("tasks")
    conn: BrokerConnection | None = None
    try:
        await declare_topology(admin)
        await declare_queue(admin, await admin.channel(confirms=False), spec)
        await admin.close()
        leader = await asyncio.to_thread(cluster.leader_of, spec.name)
        survivor = next(n for n in cluster.nodes if n is not leader)
        one_node = f"amqp://guest:guest@{survivor.address}/"
        settings = BrokerSettings(amqp_url=one_node, namespace=NAMESPACE, publish_timeout_s=3)
        conn = await BrokerConnection(settings, role="test").connect()
        before = await Publisher(conn, sender="test").start()
        assert await send_until_confirmed(before, give_up_s=30) >= 1

        await asyncio.to_thread(leader.kill)
        # as after a reconnect: a channel that meets the queue first now
        after = await Publisher(conn, sender="test").start()
        attempts = await send_until_confirmed(after, give_up_s=GIVE_UP_S)

        assert not leader.running  # it got through while the old leader was still down
        assert attempts >= 1
        assert await send_until_confirmed(before, give_up_s=30) >= 1
    finally:
        if conn is not None:
            await conn.close()
        with contextlib.suppress(Exception):
            cleanup = await BrokerConnection(everywhere, role="test-admin").connect()
            await delete_namespace(cleanup, known_queues(cleanup.topology))
            await cleanup.close()
