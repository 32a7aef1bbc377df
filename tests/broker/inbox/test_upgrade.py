"""An inbox an earlier release made keeps its shape, its messages and its own DLQ.

A queue's arguments cannot change on redeclare. The last release made inboxes classic
version 2 with a DLQ each (``ns.inbox.<id>.dlq``); the one before, quorum queues with a
DLQ each. This release's agent (or `rally agents provision`) declares such an inbox as it
is: the assignments that waited in it are still there, and a delivery rejected from it
goes to its own DLQ, where `rally dlq` finds it by the agent's id.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.inspect import queue_stats
from broker.topology import QueueSpec
from tests.broker.dlq.scenario import until
from tests.broker.inbox.test_dead_letters import _assignment, _reject_one
from tests.support.amqp import publish_bytes
from workers.dlq.archive import DeadLetterArchive
from workers.dlq.directory import DlqDirectory
from workers.dlq.model import Query
from workers.dlq.mover import DeadLetterMover

pytestmark = pytest.mark.broker


def _earlier(spec: QueueSpec, queue_type: str) -> QueueSpec:
    """The inbox as an earlier release declared it: its own DLQ, classic v2 or quorum."""
    return replace(
        spec, common_dlq=None, queue_type=queue_type, classic_version=2, earlier_type=None
    )


async def _depth(conn: BrokerConnection, name: str) -> int | None:
    (stats,) = await queue_stats(conn, [name])
    return stats.messages if stats.exists else None


@pytest.mark.parametrize("earlier_type", ["classic", "quorum"])
async def test_an_earlier_inbox_keeps_its_assignments_and_its_own_dlq(
    broker: BrokerConnection, dlq_archive: DeadLetterArchive, earlier_type: str
) -> None:
    topology = broker.topology
    spec = topology.inbox_queue("agent-old")
    own_dlq = f"{spec.name}.dlq"
    broker.test_queues += [spec.name, own_dlq]  # type: ignore[attr-defined]
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, _earlier(spec, earlier_type))
    await publish_bytes(broker, topology.inbox, "agent-old", _assignment())
    await publish_bytes(broker, topology.inbox, "agent-old", _assignment())

    await declare_queue(broker, channel, spec)  # this release's agent comes back
    assert await _depth(broker, spec.name) == 2  # nothing assigned while away is lost
    await _reject_one(broker, spec.name)

    async def in_its_own_dlq() -> bool:  # a quorum queue dead-letters in the background
        return await _depth(broker, own_dlq) == 1

    await until(in_its_own_dlq, timeout=10)

    async def agents() -> list[str]:
        return ["agent-old"]

    directory = DlqDirectory(topology, workers=(), agents=agents)
    assert await DeadLetterMover(broker, dlq_archive, directory=directory).drain() == 1
    (row,) = await dlq_archive.find(Query())
    assert (row.queue, row.reason) == (spec.name, "nacked")
    assert await dlq_archive.queues() == [own_dlq]  # taken from the inbox's own DLQ


async def test_an_inbox_of_this_release_redeclares_as_it_is(broker: BrokerConnection) -> None:
    spec = broker.topology.inbox_queue("agent-new")
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, spec)
    await publish_bytes(broker, broker.topology.inbox, "agent-new", _assignment())
    await declare_queue(broker, channel, spec)  # an agent restarting
    assert await _depth(broker, spec.name) == 1
    assert await _depth(broker, f"{spec.name}.dlq") is None  # no DLQ of its own
