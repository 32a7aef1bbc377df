"""Raw messages taken from queues that exist, for a caller that settles each one itself.

The consumer runtime decodes, authorizes and settles for its handler. Tools
that keep a message whole need less and more: the dead-letter mover stores a
letter first and acks it after, so it takes deliveries unsettled, either as a
subscriber (:class:`QueueReader`) or one at a time (:func:`taking`).
Deliveries are typed by the :class:`Delivery` Protocol, which aio-pika's
incoming messages satisfy, so no caller outside broker/ sees an aio-pika type.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from broker.connection import BrokerConnection
from broker.errors import TopologyError


class QueuedMessage(Protocol):
    """A message as read from a queue (aio-pika's IncomingMessage, or a test's copy).

    Its properties are read as attributes: aio-pika's ``info()`` turns a missing
    ``type`` into the string "None".
    """

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, Any]: ...

    @property
    def exchange(self) -> str | None: ...

    @property
    def routing_key(self) -> str | None: ...


class Delivery(QueuedMessage, Protocol):
    """A message taken from a queue, not yet settled: the taker acks or hands it back."""

    async def ack(self, multiple: bool = False) -> None: ...

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


Receiver = Callable[[Delivery], Awaitable[None]]


class QueueReader:
    """Subscribes to queues that exist; each delivery goes to its receiver unsettled.

    At most ``prefetch`` deliveries are unsettled at once, across all queues.
    Unsettled deliveries go back to their queue when the reader closes.
    """

    def __init__(self, conn: BrokerConnection, *, prefetch: int) -> None:
        self.conn = conn
        self.prefetch = prefetch
        self._channel: AbstractChannel | None = None
        self._following: dict[str, tuple[AbstractQueue, str]] = {}  # name -> (queue, tag)

    async def open(self) -> QueueReader:
        self._channel = await self.conn.channel(confirms=False, prefetch=self.prefetch)
        return self

    @property
    def following(self) -> list[str]:
        return sorted(self._following)

    async def follow(self, name: str, receive: Receiver) -> None:
        """Take from queue ``name`` (it must exist) until :meth:`unfollow` or :meth:`close`."""
        if self._channel is None:
            raise RuntimeError("QueueReader.open() first")
        if name in self._following:
            return
        queue = self.conn.keep(await self._channel.declare_queue(name, passive=True))

        async def deliver(message: AbstractIncomingMessage) -> None:
            await receive(message)

        tag = await queue.consume(deliver)
        self._following[name] = (queue, tag)

    async def unfollow(self, name: str) -> None:
        """Take no more from ``name``; what was taken stays the receiver's to settle."""
        queue, tag = self._following.pop(name)
        with contextlib.suppress(Exception):  # the channel may already be gone
            await queue.cancel(tag)

    async def close(self) -> None:
        for name in list(self._following):
            await self.unfollow(name)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None


class Taker:
    """One message at a time from one queue (``basic.get``), each unsettled until acked."""

    def __init__(self, queue: AbstractQueue) -> None:
        self._queue = queue

    async def take(self) -> Delivery | None:
        """The next message, or None if the queue is empty now."""
        return await self._queue.get(no_ack=False, fail=False)


@contextlib.asynccontextmanager
async def taking(conn: BrokerConnection, name: str) -> AsyncIterator[Taker]:
    """``async with taking(conn, queue) as taker:``; what is unsettled at the end goes back.

    Raises :class:`TopologyError` if the queue does not exist.
    """
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelClosed as exc:
            raise TopologyError(f"queue {name!r} does not exist") from exc
        yield Taker(queue)
    finally:
        if not channel.is_closed:
            await channel.close()
