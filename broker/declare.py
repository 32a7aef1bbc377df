"""Declare the topology and check it took, before anything consumes or publishes.

A queue that exists keeps the arguments it was created with (RabbitMQ refuses any
change on redeclare): each is first declared on a probe channel with this release's
arguments, then, if the broker refuses them, with each earlier shape in turn
(``_older_arguments``), and the one it takes is declared for real. The probe
channel is kept per connection and only reopened after a refusal, and the dead-letter
exchange and an inbox's shared DLQ are checked once per connection: 10,000 inboxes
declare with four round trips each, not fourteen and three channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from dataclasses import dataclass, field, replace
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustChannel

from broker.connection import BrokerConnection
from broker.errors import TopologyError
from broker.placement import placed_arguments
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
        await _checked_dlx(conn)
    return conn.keep(
        await _declare(channel, conn.topology, spec, conn.settings.delivery_limit, conn)
    )


async def declare_for_others(conn: BrokerConnection, spec: QueueSpec) -> None:
    """Declare a queue that someone else will consume (`rally agents provision` declares an
    agent's inbox), on a channel of its own, closed after."""
    if spec.dead_letter:
        await _checked_dlx(conn)
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
    if spec.dead_letter and spec.common_dlq is not None:
        await _shared_dlq(conn, channel, spec)
    elif spec.dead_letter:
        await _own_dlq(conn, channel, spec)
    if spec.classic_exclusive:
        queue = await channel.declare_queue(
            spec.name,
            durable=False,
            exclusive=True,
            auto_delete=True,
            arguments=topology.queue_arguments(spec, delivery_limit) or None,
        )
    else:
        # a queue that exists keeps its type, its DLQ and the replicas and leader it was
        # created with
        current = topology.queue_arguments(spec, delivery_limit)
        older = _older_arguments(topology, spec, delivery_limit)
        arguments = await _kept(conn, spec.name, [current, *older]) if older else current
        if arguments.get("x-queue-type") == "quorum":
            arguments = await placed_arguments(conn, spec.name, arguments)
        if spec.common_dlq and arguments.get("x-dead-letter-routing-key") == spec.name:
            await _own_dlq(conn, channel, spec)  # an earlier release's inbox: its own DLQ
        queue = await channel.declare_queue(spec.name, durable=True, arguments=arguments)
    for exchange, key in spec.bindings:
        await queue.bind(exchange, routing_key=key)
    for exchange, key in spec.retired:
        await queue.unbind(exchange, routing_key=key)  # a no-op where it was never bound
    if spec.dead_letter:
        await queue.bind(topology.requeue, routing_key=topology.retry_binding_key(spec.name))
    return queue


def _older_arguments(topology: Topology, spec: QueueSpec, limit: int) -> list[dict[str, Any]]:
    """Every other shape ``spec`` may exist in: with its own DLQ (inboxes before they shared
    one), of the other type, of another classic version (inboxes were version 2)."""
    types = dict.fromkeys(t for t in (spec.queue_type, spec.earlier_type) if t is not None)
    shapes = [
        replace(spec, common_dlq=dlq, queue_type=kind, classic_version=version)
        for dlq in dict.fromkeys((None, spec.common_dlq))
        for kind in types
        for version in ((2, 1) if kind == "classic" else (spec.classic_version,))
    ]
    current = topology.queue_arguments(spec, limit)
    found = [topology.queue_arguments(s, limit) for s in shapes]
    return [a for i, a in enumerate(found) if a != current and a not in found[:i]]


async def _own_dlq(conn: BrokerConnection, channel: AbstractChannel, spec: QueueSpec) -> None:
    """``<queue>.dlq``, bound to the DLX with the queue's name, of the queue's type."""
    await _dlq(conn, channel, spec, f"{spec.name}.dlq", spec.name)


async def _shared_dlq(conn: BrokerConnection, channel: AbstractChannel, spec: QueueSpec) -> None:
    """The DLQ ``spec`` shares with queues like it, once per connection, before the queue:
    whoever declares the first inbox (an agent, `rally agents provision`) declares it."""
    assert spec.common_dlq is not None
    state = _state_of(conn)
    if spec.common_dlq not in state.ensured:
        await _dlq(conn, channel, spec, spec.common_dlq, spec.common_dlq)
        state.ensured.add(spec.common_dlq)


async def _dlq(
    conn: BrokerConnection, channel: AbstractChannel, spec: QueueSpec, name: str, key: str
) -> None:
    topology = conn.topology
    candidates = [topology.dlq_arguments(spec)]
    if spec.earlier_type:
        candidates.append(topology.dlq_arguments(spec, spec.earlier_type))
    dlq = await channel.declare_queue(
        name, durable=True, arguments=await _kept(conn, name, candidates)
    )
    await dlq.bind(topology.dlx, routing_key=key)
    conn.keep(dlq)


@dataclass
class _DeclareState:
    """What one connection has checked, and its probe channel."""

    probe: AbstractRobustChannel | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ensured: set[str] = field(default_factory=set)  # shared DLQs and the DLX, checked


_STATES: weakref.WeakKeyDictionary[BrokerConnection, _DeclareState] = weakref.WeakKeyDictionary()


def _state_of(conn: BrokerConnection) -> _DeclareState:
    state = _STATES.get(conn)
    if state is None:
        state = _STATES[conn] = _DeclareState()
    return state


async def _checked_dlx(conn: BrokerConnection) -> None:
    state = _state_of(conn)
    if conn.topology.dlx not in state.ensured:
        await check_exchange(conn, conn.topology.dlx)
        state.ensured.add(conn.topology.dlx)


async def _kept(
    conn: BrokerConnection, name: str, candidates: list[dict[str, Any]]
) -> dict[str, Any]:
    """The first of ``candidates`` durable queue ``name`` takes (creating it with the first
    if it is new). None taken: the first, for the real declare to fail in the broker's words.

    RabbitMQ names the first argument that differs, not always the one that matters, so
    the answer is a declare, not a parse. A refusal closes the probe channel.
    """
    state = _state_of(conn)
    async with state.lock:
        for arguments in candidates:
            if state.probe is None or state.probe.is_closed:
                state.probe = await conn.connection.channel(publisher_confirms=False)
            try:
                await state.probe.declare_queue(
                    name, durable=True, arguments=arguments, robust=False
                )
                return arguments
            except aio_pika.exceptions.ChannelPreconditionFailed:
                refused, state.probe = state.probe, None
                with contextlib.suppress(Exception):  # closed by the broker; stop a reopen
                    await refused.close()
    return candidates[0]


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
    """Remove a namespace's exchanges, the DLQs its queues share (clients' private inboxes',
    agent inboxes') and the named queues (tests and `rally` clean-up).

    The shared DLQs are the namespace's own, like its exchanges, so no caller need list them;
    deleting one that does not exist is no error.
    """
    _STATES.pop(conn, None)  # what was checked is gone
    topology = conn.topology
    names = dict.fromkeys([*queue_names, topology.shared_dlq, topology.inbox_dlq])
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        for name in names:
            await channel.queue_delete(name, if_unused=False, if_empty=False)
        for spec in conn.topology.exchanges():
            await channel.exchange_delete(spec.name, if_unused=False)
    finally:
        await channel.close()
