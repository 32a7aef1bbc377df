"""Glue between contracts and the store: events in and out, metadata, outbox messages.

Handlers speak in contract models; the store speaks in ``NewEvent`` /
``RecordedEvent`` / ``OutboxMessage``. These helpers are the only translation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from broker import tracing
from broker.router import Incoming
from contracts import Envelope, Event, Message, decode_payload, encode
from contracts.envelope import decode_current_json
from contracts.headers import MESSAGE_TYPE as MESSAGE_TYPE
from contracts.ids import new_id
from contracts.versions import for_writing
from workers.store.base import Metadata, NewEvent, OutboxMessage, RecordedEvent


def new_event(event: Event) -> NewEvent:
    """The event to append, in the version every replica of the fleet reads."""
    version, data = for_writing(event)
    return NewEvent(type=event.type_name(), data=data, schema_version=version)


def load_event(record: RecordedEvent) -> Event:
    """The recorded event as its contract model (old versions upcast, from its record).

    A record read from the store keeps its data as JSON text until asked: an event of the
    current version is validated from that text in one step (pydantic's own parser),
    which costs half of parsing it into a dict and validating that."""
    text = record.data_text()
    payload = None
    if text is not None:
        payload = decode_current_json(record.type, record.schema_version, text)
    if payload is None:
        payload = decode_payload(
            record.type, record.schema_version, record.data, recorded_at=record.recorded_at
        )
    if not isinstance(payload, Event):
        raise TypeError(f"{record.type} at position {record.position} is not an event")
    return payload


def metadata_for(incoming: Incoming[Any] | None, *, worker: str, replica: str) -> Metadata:
    if incoming is None:
        return Metadata(worker=worker, replica=replica)
    env = incoming.envelope
    message_id = str(env.id)
    return Metadata(
        message_id=message_id,
        causation_id=message_id,
        correlation_id=str(env.correlation_id),
        sender=incoming.user_id or env.sender,
        worker=worker,
        replica=replica,
        traceparent=tracing.recorded_traceparent(env.correlation_id),
    )


@dataclass(frozen=True, slots=True)
class Effect:
    """A side effect a decision asks for: a notice to an inbox, or a command to a worker.

    ``to`` is the inbox (agent or client id) for a notice; commands go to their route.
    ``not_before`` makes it a timer: the relay holds it until then. ``timer_of``: the
    stream the timer watches (``stream_of(task_id)``); an append passing that stream in
    ``cancel_timers_of`` deletes the timer unpublished.
    """

    payload: Message
    to: str | None = None
    not_before: datetime | None = None
    correlation_id: UUID | None = None
    timer_of: str | None = None


def outbox_message(
    effect: Effect, *, sender: str, caused_by: Envelope[Any] | None = None
) -> OutboxMessage:
    payload = effect.payload
    envelope = Envelope.wrap(
        payload,
        sender=sender,
        caused_by=caused_by,
        correlation_id=effect.correlation_id,
        message_id=new_id(),
    )
    if payload.kind == "notice":
        if effect.to is None:
            raise ValueError(f"{payload.type_name()} is a notice: give its recipient")
        exchange, key = "inbox", effect.to
    elif payload.kind == "command":
        exchange, key = "commands", f"{payload.route}.{payload.type_name()}"
    else:
        raise ValueError(f"{payload.type_name()} is an event: events go out through the store")
    return OutboxMessage(
        exchange=exchange,
        routing_key=key,
        body=encode(envelope),
        message_id=str(envelope.id),
        headers={
            tracing.TRACEPARENT: tracing.recorded_traceparent(envelope.correlation_id),
            MESSAGE_TYPE: envelope.type,  # a notice's routing key is its recipient, not its type
        },
        not_before=effect.not_before,
        timer_of=effect.timer_of,
    )


def outbox_messages(
    effects: list[Effect], *, sender: str, caused_by: Envelope[Any] | None = None
) -> list[OutboxMessage]:
    return [outbox_message(e, sender=sender, caused_by=caused_by) for e in effects]
