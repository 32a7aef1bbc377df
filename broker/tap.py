"""Copies of the messages routed to some bindings, on a private queue, for an observer.

A tap takes nothing from the queues that do the work and settles nothing: its
queue (declared by ``Topology``, e.g. :meth:`Topology.dashboard_tap_queue`) is
exclusive, unacknowledged and bounded, and disappears with the connection.
It is held here, not by the connection, so a tap that failed to start is not
restored after a reconnect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from broker.connection import BrokerConnection
from broker.queue_reader import QueuedMessage
from broker.topology import QueueSpec

log = structlog.get_logger(__name__)

Observer = Callable[[QueuedMessage], Awaitable[None] | None]


class Tap:
    def __init__(
        self, conn: BrokerConnection, spec: QueueSpec, observe: Observer, *, prefetch: int = 256
    ) -> None:
        if not spec.classic_exclusive:
            raise ValueError(f"a tap's queue is private and exclusive, not {spec.name!r}")
        self.conn = conn
        self.spec = spec
        self.observe = observe
        self.prefetch = prefetch
        self._channel: AbstractChannel | None = None

    async def start(self) -> Tap:
        channel = self._channel = await self.conn.connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self.prefetch)
        queue = await channel.declare_queue(
            self.spec.name,
            durable=False,
            exclusive=True,
            auto_delete=True,
            arguments=self.conn.topology.queue_arguments(self.spec, 0) or None,
        )
        for exchange, key in self.spec.bindings:
            await queue.bind(exchange, routing_key=key)
        await queue.consume(self._deliver, no_ack=True)
        log.debug("broker.tap_started", queue=self.spec.name)
        return self

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        result = self.observe(message)
        if result is not None:
            await result

    async def stop(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None
