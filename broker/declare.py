"""Declare the topology and check it took, before anything consumes or publishes."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from broker.connection import BrokerConnection
from broker.errors import TopologyError
from broker.placement import placed_arguments
from broker.queue_type import kept_type
from broker.topology import ExchangeKind, QueueSpec, Topology

_KINDS = {
    ExchangeKind.TOPIC: aio_pika.ExchangeType.TOPIC,
    ExchangeKind.DIRECT: aio_pika.ExchangeType.DIRECT,
}


async def declare_topology(conn: BrokerConnection) -> None:
    """The exchanges and delay queues every process relies on. Idempotent."""
    topology, limit = conn.topology, conn.settings.delivery_limit
    channel = await conn.channel(confirms=False)
    try:
        for spec in topology.exchanges():
            await channel.declare_exchange(spec.name, _KINDS[spec.kind], durable=True)
        for queue in topology.delay_queues():
            await _declare(channel, topology, queue, limit, conn)
        shared = await channel.declare_queue(
            topology.shared_dlq, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await shared.bind(topology.dlx, routing_key=topology.shared_dlq)
    finally:
        await channel.close()
    await check_exchange(conn, topology.dlx)


async def declare_queue(
    conn: BrokerConnection, channel: AbstractChannel, spec: QueueSpec, *, passive: bool = False
) -> AbstractQueue:
    """Declare a queue with its dead-letter queue and bindings; the DLX must already exist.

    ``passive`` only checks that it exists, for a user that may not declare it (an agent
    with its own broker user: `rally agents provision` declares its inbox for it).
    """
    if passive:
        return conn.keep(await _existing_queue(conn, channel, spec.name))
    if spec.dead_letter:
        await check_exchange(conn, conn.topology.dlx)
    return conn.keep(
        await _declare(channel, conn.topology, spec, conn.settings.delivery_limit, conn)
    )


async def declare_for_others(conn: BrokerConnection, spec: QueueSpec) -> None:
    """Declare a queue that someone else will consume (`rally agents provision` declares an
    agent's inbox), on a channel of its own, closed after."""
    if spec.dead_letter:
        await check_exchange(conn, conn.topology.dlx)
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        await _declare(channel, conn.topology, spec, conn.settings.delivery_limit, conn)
    finally:
        if not channel.is_closed:
            await channel.close()


async def _declare(
    channel: AbstractChannel,
    topology: Topology,
    spec: QueueSpec,
    delivery_limit: int,
    conn: BrokerConnection,
) -> AbstractQueue:
    if spec.dead_letter:
        earlier = topology.dlq_arguments(spec, spec.earlier_type) if spec.earlier_type else None
        dlq_args = await kept_type(conn, spec.dlq, topology.dlq_arguments(spec), earlier)
        dlq = await channel.declare_queue(spec.dlq, durable=True, arguments=dlq_args)
        await dlq.bind(topology.dlx, routing_key=spec.name)
    if spec.classic_exclusive:
        queue = await channel.declare_queue(
            spec.name,
            durable=False,
            exclusive=True,
            auto_delete=True,
            arguments=topology.queue_arguments(spec, delivery_limit) or None,
        )
    else:
        # a queue that exists keeps its type, and the replicas and leader it was created with
        arguments = await kept_type(
            conn,
            spec.name,
            topology.queue_arguments(spec, delivery_limit),
            topology.earlier_arguments(spec, delivery_limit),
        )
        if arguments.get("x-queue-type") == "quorum":
            arguments = await placed_arguments(conn, spec.name, arguments)
        queue = await channel.declare_queue(spec.name, durable=True, arguments=arguments)
    for exchange, key in spec.bindings:
        await queue.bind(exchange, routing_key=key)
    for exchange, key in spec.retired:
        await queue.unbind(exchange, routing_key=key)  # a no-op where it was never bound
    if spec.dead_letter:
        await queue.bind(topology.requeue, routing_key=topology.retry_binding_key(spec.name))
    return queue


async def _existing_queue(
    conn: BrokerConnection, channel: AbstractChannel, name: str
) -> AbstractQueue:
    # checked on a channel of its own, as a failed passive declare closes it; then taken on
    # the caller's channel, which re-checks it passively (no rights needed) on reconnect
    probe = await conn.connection.channel(publisher_confirms=False)
    try:
        await probe.declare_queue(name, passive=True, robust=False)
    except aio_pika.exceptions.ChannelClosed as exc:
        raise TopologyError(
            f"queue {name!r} does not exist, and this broker user may not declare it: "
            "`rally agents provision ID` declares an agent's inbox"
        ) from exc
    finally:
        if not probe.is_closed:
            await probe.close()
    return await channel.declare_queue(name, passive=True)


async def check_agent_topology(conn: BrokerConnection) -> None:
    """What an agent with its own broker user needs and may not declare: the commands exchange."""
    await check_exchange(conn, conn.topology.commands)


async def check_exchange(conn: BrokerConnection, name: str) -> None:
    """A dead-letter exchange that does not exist drops messages silently: refuse to go on."""
    # a failed passive declare closes its channel, so it gets one of its own
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        await channel.get_exchange(name, ensure=True)
    except aio_pika.exceptions.ChannelClosed as exc:
        raise TopologyError(
            f"exchange {name!r} does not exist: declare the topology first "
            "(any `rally worker` does at start)"
        ) from exc
    finally:
        if not channel.is_closed:
            await channel.close()


async def delete_namespace(conn: BrokerConnection, queue_names: list[str]) -> None:
    """Remove a namespace's exchanges and the named queues (tests and `rally` clean-up)."""
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        for name in queue_names:
            await channel.queue_delete(name, if_unused=False, if_empty=False)
        for spec in conn.topology.exchanges():
            await channel.exchange_delete(spec.name, if_unused=False)
    finally:
        await channel.close()
