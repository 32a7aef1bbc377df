"""Inboxes are classic queues now; an inbox an earlier release made a quorum queue keeps working."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.inspect import queue_depths
from broker.topology import QueueSpec
from tests.support.amqp import declares_with, publish_bytes

pytestmark = pytest.mark.broker


async def types_of(conn: BrokerConnection, spec: QueueSpec) -> tuple[str | None, str | None]:
    """The inbox's and its DLQ's type, asked the only way AMQP allows: which type's
    arguments (this release's or the last one's) does a redeclare accept?"""
    topology, limit = conn.topology, conn.settings.delivery_limit
    quorum = topology.queue_arguments(replace(spec, queue_type="quorum"), limit)
    inbox = {"classic": topology.queue_arguments(spec, limit), "quorum": quorum}
    dlq = {
        "classic": topology.dlq_arguments(spec),
        "quorum": topology.dlq_arguments(spec, "quorum"),
    }
    found: list[str | None] = []
    for name, candidates in ((spec.name, inbox), (spec.dlq, dlq)):
        kinds = [k for k, args in candidates.items() if await declares_with(conn, name, args)]
        found.append(kinds[0] if len(kinds) == 1 else None)
    return found[0], found[1]


async def test_a_new_inbox_and_its_dead_letters_are_classic(broker: BrokerConnection) -> None:
    spec = broker.topology.inbox_queue("agent-new")
    broker.test_queues += [spec.name, spec.dlq]  # type: ignore[attr-defined]
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, spec)
    assert await types_of(broker, spec) == ("classic", "classic")
    await publish_bytes(broker, broker.topology.inbox, "agent-new", b"assignment")
    assert (await queue_depths(broker, [spec.name]))[spec.name] == 1


async def test_an_earlier_quorum_inbox_is_declared_as_it_is_and_keeps_its_messages(
    broker: BrokerConnection,
) -> None:
    topology = broker.topology
    spec = topology.inbox_queue("agent-old")
    broker.test_queues += [spec.name, spec.dlq]  # type: ignore[attr-defined]
    earlier = replace(spec, queue_type="quorum", earlier_type=None)  # as the last release had it
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, earlier)
    await publish_bytes(broker, topology.inbox, "agent-old", b"assigned while away")
    assert await types_of(broker, spec) == ("quorum", "quorum")

    await declare_queue(broker, channel, spec)  # this release's agent (or provisioning) starts
    assert await types_of(broker, spec) == ("quorum", "quorum")
    assert (await queue_depths(broker, [spec.name]))[spec.name] == 1
    await publish_bytes(broker, topology.inbox, "agent-old", b"assigned after the upgrade")
    assert (await queue_depths(broker, [spec.name]))[spec.name] == 2
