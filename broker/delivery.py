"""One message as the consumer runtime handles it, read out of a raw AMQP delivery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from broker.publisher import JSON


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery of its own, or a member of a bundle; ``headers`` are already admitted."""

    body: bytes
    message_id: str | None
    type: str | None
    correlation_id: str | None
    headers: dict[str, Any]
    user_id: str | None  # broker-validated publisher (a bundle's, for each of its members)
    exchange: str
    routing_key: str
    redelivered: bool
    content_type: str = JSON


def from_message(message: AbstractIncomingMessage, headers: dict[str, Any]) -> Delivery:
    return Delivery(
        body=message.body,
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
        headers=headers,
        user_id=message.user_id,
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        redelivered=bool(message.redelivered),
        content_type=message.content_type or JSON,
    )


def int_header(value: object, default: int) -> int:
    if value is None:  # the usual case: no such header (and raising costs more than a check)
        return default
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError, OverflowError):
        return default
