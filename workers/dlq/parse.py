"""Turn a message taken from a dead-letter queue into a :class:`DeadLetter`. Pure, and total.

Two kinds arrive. Those our consumer runtime dead-lettered carry the
``x-rally-*`` headers (broker/deadletter.py). Those RabbitMQ dead-lettered
itself (delivery limit, TTL, a consumer's reject without requeue, overflow)
carry only its ``x-death`` list. A message retried through our delay queues
has ``x-death`` entries too (reason ``expired``, from the delay queue), so the
rallypoint headers win whenever they are there, and of the ``x-death`` entries
the one for the work queue counts. Parsing never raises: whatever is odd about
a dead letter is kept and shown, never a reason to leave it in the queue.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from broker import headers as h
from broker.deadletter import ORIGINAL_USER_ID
from contracts import lookup
from contracts.headers import REPLAY_OF as REPLAY_OF
from workers.dlq.model import (
    DeadLetter,
    DeadLetteredBy,
    FieldError,
    Json,
    letter_id,
    message_key,
    utc,
)

# RabbitMQ's dead-letter reasons, as we name them (its "rejected" is a consumer's nack
# without requeue — not our handler's Reject, which is "rejected" in x-rally-reason)
_BROKER_REASONS = {
    "delivery_limit": "delivery_limit",
    "expired": "expired",
    "rejected": "nacked",
    "maxlen": "maxlen",
}


@dataclass(frozen=True, slots=True)
class RawDeadLetter:
    """A delivery from a DLQ, reduced to plain data (the transport fills it in)."""

    dlq: str
    body: bytes
    headers: Mapping[str, Any]
    properties: Mapping[str, Any] = field(default_factory=dict)
    exchange: str | None = None
    routing_key: str | None = None


def parse(raw: RawDeadLetter, *, now: datetime, delivery_limit: int) -> DeadLetter:
    headers = dict(raw.headers)
    props = dict(raw.properties)
    queue = raw.dlq.removesuffix(".dlq")
    message_id = _str(props.get("message_id"))
    message_type = _str(headers.get(h.DL_TYPE)) or _str(props.get("type")) or _body_type(raw.body)
    death = _death_entry(headers.get("x-death"), queue)
    by: DeadLetteredBy
    if h.DL_REASON in headers:
        reason = _str(headers[h.DL_REASON]) or "unknown"
        by = "rallypoint"
        queue = _str(headers.get(h.DL_QUEUE)) or queue
        last = _time(headers.get(h.DL_LAST_DEATH)) or _time(props.get("timestamp")) or now
        first = _time(headers.get(h.DL_FIRST_DEATH)) or last
        attempts = _int(headers.get(h.DL_ATTEMPTS), 1)
        exchange = _str(headers.get(h.DL_EXCHANGE))
        routing_key = _str(headers.get(h.DL_ROUTING_KEY))
        error = _str(headers.get(h.DL_ERROR))
        error_type = _str(headers.get(h.DL_ERROR_TYPE))
    elif death is not None:
        broker_reason = _str(death.get("reason")) or "unknown"
        reason = _BROKER_REASONS.get(broker_reason, broker_reason)
        by = "rabbitmq"
        queue = _str(death.get("queue")) or queue
        last = _time(death.get("time")) or now
        first = _time(headers.get(h.DL_FIRST_DEATH)) or last
        # a quorum queue dead-letters on the delivery after the limit: limit + 1 deliveries
        count = _int(death.get("count"), 1)
        attempts = delivery_limit + 1 if reason == "delivery_limit" else count
        # a message retried through a delay queue arrived from our requeue exchange;
        # the rallypoint origin headers, when a replay kept them, say where it was going
        exchange = _str(headers.get(h.DL_EXCHANGE)) or _str(death.get("exchange"))
        keys = death.get("routing-keys")
        first_key = _str(keys[0]) if isinstance(keys, list) and keys else None
        routing_key = _str(headers.get(h.DL_ROUTING_KEY)) or first_key
        error = f"RabbitMQ dead-lettered it from {queue}: {broker_reason}"
        error_type = None
    else:
        reason, by = "unknown", "rallypoint"
        last = _time(props.get("timestamp")) or now
        first, attempts = last, 1
        exchange, routing_key = raw.exchange, raw.routing_key
        error = "it arrived in the dead-letter queue with no reason in its headers"
        error_type = None
    exchange, routing_key = _recover_origin(exchange, routing_key, message_type)
    last, first = utc(last), utc(min(utc(first), utc(last)))
    key = message_key(message_id, raw.body)
    return DeadLetter(
        id=letter_id(raw.dlq, key, last),
        dlq=raw.dlq,
        queue=queue,
        message_key=key,
        message_id=message_id,
        message_type=message_type,
        reason=reason,
        dead_lettered_by=by,
        error=error,
        error_type=error_type,
        field_errors=_field_errors(headers.get(h.DL_ERRORS)),
        exchange=exchange,
        routing_key=routing_key,
        attempts=max(1, attempts),
        first_death_at=first,
        last_death_at=last,
        worker=_str(headers.get(h.DL_WORKER)),
        replica=_str(headers.get(h.DL_REPLICA)),
        correlation_id=_str(props.get("correlation_id")),
        user_id=_str(headers.get(ORIGINAL_USER_ID)) or _str(props.get("user_id")),
        body=raw.body,
        headers={str(k): jsonable(v) for k, v in headers.items()},
        properties={k: jsonable(v) for k, v in props.items() if v is not None},
        archived_at=utc(now),
        replay_of=_str(headers.get(REPLAY_OF)),
    )


def _recover_origin(
    exchange: str | None, routing_key: str | None, message_type: str | None
) -> tuple[str | None, str | None]:
    """Where a retried message was first going, when its headers lost it.

    The consumer runtime records the exchange a message last came from; after a
    retry that is ``<ns>.requeue`` (from the delay queue), not where the sender
    published it. For a command the origin follows from its contract (commands
    exchange, ``<route>.<Type>``); anything else keeps what was recorded.
    """
    if not exchange or not exchange.endswith(".requeue") or not message_type:
        return exchange, routing_key
    cls = lookup(message_type)
    if cls is None or cls.kind != "command" or not cls.route:
        return exchange, routing_key
    namespace = exchange.removesuffix(".requeue")
    return f"{namespace}.commands", f"{cls.route}.{cls.type_name()}"


def _death_entry(value: object, queue: str) -> Mapping[str, Any] | None:
    """The ``x-death`` entry that put it here: the work queue's, else the latest."""
    if not isinstance(value, list):
        return None
    entries = [e for e in value if isinstance(e, Mapping)]
    for entry in entries:
        if _str(entry.get("queue")) == queue:
            return entry
    return entries[0] if entries else None


def _field_errors(value: object) -> tuple[FieldError, ...]:
    text = _str(value)
    if not text:
        return ()
    try:
        items = json.loads(text)
    except ValueError:
        return (FieldError(loc="?", msg=text),)
    if not isinstance(items, list):
        return ()
    return tuple(
        FieldError(loc=str(i.get("loc", "?")), msg=str(i.get("msg", "")))
        for i in items
        if isinstance(i, dict)
    )


def jsonable(value: Any) -> Json:
    """AMQP header values made JSON-safe: times as ISO text, bytes as text or base64."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return {"$base64": base64.b64encode(raw).decode()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def _body_type(body: bytes) -> str | None:
    """The envelope's ``type`` when the AMQP property is missing (a hand-published message)."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind[:255] if isinstance(kind, str) and kind else None


def _str(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    text = str(value)
    return text or None


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return default


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return utc(value)
    text = _str(value)
    if not text:
        return None
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        return None
