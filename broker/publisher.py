"""The confirmed publisher: persistent, mandatory, time-boxed, retried, pipelined.

Every publish waits for the broker's confirm, so a returned call means the
broker has the message. Many publishes run at once on one channel (each awaits
its own confirm), which is what makes confirms fast. A message that no queue
takes raises :class:`Unroutable` instead of vanishing.
"""

from __future__ import annotations

import asyncio
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
from contracts import Envelope, Message, encode

log = structlog.get_logger(__name__)

PERSISTENT = 2  # AMQP delivery mode: written to disk by the broker

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


def routing_key_for(payload: Message) -> str:
    if payload.kind == "command":
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
            )
        )

    # ---- raw ----
    async def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish all at once and wait for every confirm; raises the first failure."""
        results = await asyncio.gather(
            *(self.publish_raw(m) for m in messages), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def publish_raw(self, message: Outgoing) -> None:
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
            content_type="application/json",
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
