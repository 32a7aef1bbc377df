"""The confirmed publisher: persistent, mandatory, time-boxed, retried, pipelined, bundled.

Every publish waits for the broker's confirm, so a returned call means the
broker has the message. Many publishes run at once on one channel (each awaits
its own confirm), which is what makes confirms fast. A message that no queue
takes raises :class:`Unroutable` instead of vanishing.

Bundling: messages marked ``bundle`` that are published in the same turn of
the event loop to the same exchange and routing key leave as one broker
message (``contracts/bundle.py``), and each caller returns when that one is
confirmed. There is no timer: a lone message goes out at once, on its own;
under load, whatever piled up while the loop was busy goes together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel
from pamqp.commands import Basic
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from broker import tracing
from broker.connection import BrokerConnection
from broker.errors import PublishFailed, PublishTimeout, Unroutable
from contracts import BUNDLE_CONTENT_TYPE, BundleMember, Envelope, Message, encode, encode_bundle
from contracts.bundle import BUNDLE_COUNT
from contracts.shards import registry_routing_key

log = structlog.get_logger(__name__)

PERSISTENT = 2  # AMQP delivery mode: written to disk by the broker
JSON = "application/json"
BUNDLE_MAX_BYTES = 512 * 1024  # a bundle is cut here, so one stays far below frame limits
# RabbitMQ 3.10: a channel whose first publish to a quorum queue came while the queue's
# recorded leader was a dead node has every publish to it nacked until that node is back
# (tests/faults/cluster/test_quorum_publish.py); a new channel reads the record afresh.
# So a nack brings a new channel, at most this often (a full queue nacks too).
RENEW_AFTER_NACK_S = 1.0

_TRANSIENT = (
    PublishTimeout,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ConnectionClosed,
    aio_pika.exceptions.ChannelClosed,
    aio_pika.exceptions.DeliveryError,  # a nack: the queue is full (reject-publish) or lagging
    ConnectionError,
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A ready-to-send message: where, what, and its identity."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    type: str | None = None
    correlation_id: str | None = None
    # may travel in a bundle with others for the same destination: only for messages a
    # rallypoint consumer reads (dead letters and delay queues get single messages)
    bundle: bool = False
    content_type: str = JSON


Queued = tuple[Outgoing, "asyncio.Future[None]"]


def routing_key_for(payload: Message) -> str:
    if payload.kind == "command":
        agent_id = getattr(payload, "agent_id", None)
        if payload.route == "registry" and isinstance(agent_id, str):
            return registry_routing_key(payload.type_name(), agent_id)  # its shard's slot
        return f"{payload.route}.{payload.type_name()}"
    raise ValueError(f"{payload.type_name()} is a {payload.kind}; give its routing key")


class Publisher:
    def __init__(self, conn: BrokerConnection, *, sender: str, attempts: int = 4) -> None:
        self.conn = conn
        self.sender = sender
        self.topology = conn.topology
        self._attempts = attempts
        self._channel: AbstractChannel | None = None
        # the login as the broker sees it (URL-decoded, e.g. an agent id with '@' or ':')
        self.user_id = unquote(urlsplit(conn.settings.amqp_url).username or "") or None
        self._max_bytes = conn.settings.max_message_bytes
        self._bundle_max = conn.settings.bundle_max
        self._queued: list[Queued] = []
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self._renewed_at = float("-inf")
        self.channels_renewed = 0
        self.bundles_sent = 0  # broker messages that carried more than one message

    async def start(self) -> Publisher:
        self._channel = await self.conn.channel(confirms=True)
        return self

    # ---- typed ----
    async def send(
        self,
        payload: Message,
        *,
        caused_by: Envelope[Any] | None = None,
        to: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> Envelope[Message]:
        """Wrap and publish: a command to its worker, a notice to the inbox named by ``to``."""
        envelope = Envelope.wrap(payload, sender=self.sender, caused_by=caused_by)
        if payload.kind == "notice":
            if to is None:
                raise ValueError("a notice needs a recipient: send(..., to=agent_id)")
            await self.publish(
                envelope, exchange=self.topology.inbox, routing_key=to, headers=headers
            )
        else:
            await self.publish(
                envelope,
                exchange=self.topology.commands,
                routing_key=routing_key_for(payload),
                headers=headers,
            )
        return envelope

    async def publish(
        self,
        envelope: Envelope[Any],
        *,
        exchange: str,
        routing_key: str,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        await self.publish_raw(
            Outgoing(
                exchange=exchange,
                routing_key=routing_key,
                body=encode(envelope, max_bytes=self._max_bytes),
                message_id=str(envelope.id),
                headers=tracing.inject(headers, envelope, exchange, routing_key, self.sender),
                type=envelope.type,
                correlation_id=str(envelope.correlation_id),
                bundle=True,
            )
        )

    # ---- raw ----
    async def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish all at once and wait for every confirm; raises the first failure."""
        for result in await self.publish_each(messages):
            if result is not None:
                raise result

    async def publish_each(self, messages: Sequence[Outgoing]) -> list[BaseException | None]:
        """Publish all at once; per message, None once confirmed or what it failed with.

        Bundled messages wait on plain futures, not a task each (the relay hands
        over hundreds at a time).
        """
        waits: list[asyncio.Future[None]] = []
        for message in messages:
            if message.bundle and self._bundle_max > 1:
                waits.append(self._enqueue(message))
            else:
                waits.append(asyncio.ensure_future(self._publish_reliably(message)))
        results = await asyncio.gather(*waits, return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    async def publish_raw(self, message: Outgoing) -> None:
        if message.bundle and self._bundle_max > 1:
            await self._enqueue(message)
            return
        await self._publish_reliably(message)

    def _enqueue(self, message: Outgoing) -> asyncio.Future[None]:
        """Queue for this turn's bundles; the future settles with the broker's confirm."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queued.append((message, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    # ---- bundles ----
    def _flush(self) -> None:
        """Send what this turn of the loop queued: one broker message per destination."""
        self._flush_scheduled = False
        queued, self._queued = self._queued, []
        groups: dict[tuple[str, str], list[Queued]] = {}
        for item in queued:
            if not item[1].done():  # a caller that gave up is not sent
                groups.setdefault((item[0].exchange, item[0].routing_key), []).append(item)
        for items in groups.values():
            for chunk in _chunks(items, self._bundle_max, BUNDLE_MAX_BYTES):
                task = asyncio.create_task(self._send(chunk))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(self, chunk: list[Queued]) -> None:
        try:
            if len(chunk) == 1:
                await self._publish_reliably(chunk[0][0])
            else:
                await self._publish_reliably(_bundle_of([m for m, _ in chunk]))
                self.bundles_sent += 1
        except BaseException as exc:
            for _, future in chunk:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for _, future in chunk:
                if not future.done():
                    future.set_result(None)

    async def _publish_reliably(self, message: Outgoing) -> None:
        try:  # the common case, without building a retry loop per message
            await self._publish_once(message)
            return
        except _TRANSIENT as exc:
            log.debug("publish.retrying", error=repr(exc))
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT),
            stop=stop_after_attempt(max(1, self._attempts - 1)),  # one was spent above
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._publish_once(message)
        except _TRANSIENT as exc:
            raise PublishFailed(
                f"publish to {message.exchange!r} ({message.routing_key!r}) not confirmed "
                f"after {self._attempts} attempts: {type(exc).__name__}: {exc}"
            ) from exc

    async def _publish_once(self, message: Outgoing) -> None:
        if self._channel is None:
            await self.start()
        assert self._channel is not None
        if self._channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{self._channel!r} closed")
        # Straight to aiormq with pamqp properties: aio_pika.Message validates every attribute
        # on assignment, a cost paid per message that showed up in profiles of the relay.
        properties = Basic.Properties(
            headers=dict(message.headers),
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            message_type=message.type,
            content_type=message.content_type,
            delivery_mode=PERSISTENT,
            user_id=self.user_id,
            app_id=self.sender,
        )
        timeout = self.conn.settings.publish_timeout_s
        try:
            async with asyncio.timeout(timeout):  # unlike wait_for, no extra task per message
                channel = await self._channel.get_underlay_channel()
                await channel.basic_publish(
                    message.body,
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                    properties=properties,
                    mandatory=True,
                )
        except TimeoutError:
            raise PublishTimeout(f"no confirm within {timeout}s") from None
        except aio_pika.exceptions.PublishError as exc:
            raise Unroutable(
                f"no queue is bound to {message.exchange!r} for routing key "
                f"{message.routing_key!r}: the message was returned, not delivered"
            ) from exc
        except aio_pika.exceptions.DeliveryError:  # a nack: the retry goes on a new channel
            await self._renew_channel(message.routing_key)
            raise

    async def _renew_channel(self, routing_key: str) -> None:
        now = time.monotonic()
        if now - self._renewed_at < RENEW_AFTER_NACK_S or self._channel is None:
            return
        self._renewed_at = now  # before the await: one renewal for a burst of nacks
        try:
            fresh = await self.conn.channel(confirms=True)
        except Exception as exc:  # connection trouble: the retry goes on the old one
            log.warning("publish.channel_renew_failed", error=f"{type(exc).__name__}: {exc}")
            return
        old, self._channel = self._channel, fresh
        self.conn.retire(old, after_s=self.conn.settings.publish_timeout_s)
        self.channels_renewed += 1
        log.warning("publish.channel_renewed", routing_key=routing_key, why="nacked")


def _chunks(items: list[Queued], max_members: int, max_bytes: int) -> list[list[Queued]]:
    """Cut one destination's messages into bundles of at most ``max_members`` / ``max_bytes``."""
    chunks: list[list[Queued]] = []
    current: list[Queued] = []
    size = 0
    for item in items:
        body = len(item[0].body)
        if current and (len(current) >= max_members or size + body > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += body + 200  # the member's line of properties, roughly
    if current:
        chunks.append(current)
    return chunks


def _bundle_of(messages: list[Outgoing]) -> Outgoing:
    first = messages[0]
    types = {m.type for m in messages}
    return Outgoing(
        exchange=first.exchange,
        routing_key=first.routing_key,
        body=encode_bundle(
            [
                BundleMember(
                    body=m.body,
                    message_id=m.message_id,
                    type=m.type,
                    correlation_id=m.correlation_id,
                    headers=m.headers,
                )
                for m in messages
            ]
        ),
        message_id=f"{first.message_id}+{len(messages) - 1}",
        headers={BUNDLE_COUNT: len(messages)},
        type=first.type if len(types) == 1 else None,
        content_type=BUNDLE_CONTENT_TYPE,
    )
