"""The little AMQP the dead-letter tools need, through broker/'s connection.

Taking and settling raw deliveries is broker/'s (``broker.queue_reader``); this
module turns what was taken into dead letters and settles it after the archive.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from broker.inspect import queue_depths as queue_depths
from broker.queue_reader import Delivery as Delivery
from broker.queue_reader import QueuedMessage as QueuedMessage
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
