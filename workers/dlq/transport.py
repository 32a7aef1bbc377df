"""The little AMQP the dead-letter tools need, through broker/'s connection.

Only broker/ imports aio_pika, so this module never does: deliveries are typed
by the :class:`Delivery` Protocol, which aio-pika's incoming messages satisfy.
(It belongs in broker/ — a raw, undecoded consume that the consumer runtime
does not offer — and moves there when broker/ grows one.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import structlog

from broker.connection import BrokerConnection
from contracts import BUNDLE_CONTENT_TYPE, ContractError, decode_bundle
from contracts.bundle import BUNDLE_COUNT
from workers.dlq.parse import RawDeadLetter

log = structlog.get_logger(__name__)

# the AMQP properties a dead letter keeps (headers and body are kept on their own)
_PROPERTIES = (
    "message_id",
    "correlation_id",
    "type",
    "user_id",
    "app_id",
    "content_type",
    "content_encoding",
    "delivery_mode",
    "priority",
    "timestamp",
    "expiration",
    "reply_to",
)


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
    """A message taken from a queue, not yet acked: the mover settles it."""

    async def ack(self, multiple: bool = False) -> None: ...

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


def to_raws(dlq: str, delivery: QueuedMessage) -> list[RawDeadLetter]:
    """The dead letters a delivery holds: itself, or each message of a bundle.

    A bundle reaches a DLQ whole when its delivery limit ran out (a worker died
    on it each time) or when it could not be split. Each message of one that
    splits is archived, inspected and replayed on its own, with the bundle's
    death headers and its own properties; one that does not split stays whole.
    """
    whole = to_raw(dlq, delivery)
    if whole.properties.get("content_type") != BUNDLE_CONTENT_TYPE:
        return [whole]
    try:
        members = decode_bundle(whole.body)
    except ContractError:
        return [whole]
    headers = {k: v for k, v in whole.headers.items() if k != BUNDLE_COUNT}
    raws = []
    for member in members:
        properties = {
            **whole.properties,
            "message_id": member.message_id,
            "type": member.type,
            "correlation_id": member.correlation_id,
            "content_type": "application/json",
        }
        raws.append(
            RawDeadLetter(
                dlq=dlq,
                body=member.body,
                headers={**headers, **member.headers},
                properties={k: v for k, v in properties.items() if v is not None},
                exchange=whole.exchange,
                routing_key=whole.routing_key,
            )
        )
    return raws


def to_raw(dlq: str, delivery: QueuedMessage) -> RawDeadLetter:
    properties = {k: getattr(delivery, k, None) for k in _PROPERTIES}
    return RawDeadLetter(
        dlq=dlq,
        body=bytes(delivery.body),
        headers=dict(delivery.headers or {}),
        properties={k: v for k, v in properties.items() if v is not None},
        exchange=delivery.exchange,
        routing_key=delivery.routing_key,
    )


async def queue_depths(conn: BrokerConnection, names: Iterable[str]) -> dict[str, int]:
    """Messages ready in each queue that exists (passive declare; no management API here).

    A passive declare of a missing queue closes its channel, so each probe
    runs on a channel of its own and a closed channel means "no such queue".
    """
    depths: dict[str, int] = {}
    for name in dict.fromkeys(names):
        channel = await conn.connection.channel(publisher_confirms=False)
        try:
            queue = await channel.declare_queue(name, passive=True)
        except Exception:
            if channel.is_closed:
                continue  # the broker closed it: the queue does not exist
            raise
        else:
            depths[name] = int(queue.declaration_result.message_count or 0)
        finally:
            if not channel.is_closed:
                await channel.close()
    return depths


async def settle(deliveries: Iterable[Delivery], *, stored: bool) -> None:
    """Ack what the archive committed; hand back the rest. A failed ack is harmless:
    the broker redelivers, and the archive does not count a death twice."""
    for delivery in deliveries:
        try:
            if stored:
                await delivery.ack()
            else:
                await delivery.nack(requeue=True)
        except Exception as exc:
            log.warning("dlq.settle_failed", stored=stored, error=str(exc))
