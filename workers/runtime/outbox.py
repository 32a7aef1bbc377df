"""The relay's two plug-ins: how a recorded event goes out, and who publishes it.

An event goes to the ``events`` topic exchange as an ordinary envelope: its
message id is the event id (so subscribers dedupe a re-published row), its
type the event type, its payload the contract model, its correlation and
causation from the append's metadata; routing key ``<category>.<Type>``
(``task.TaskAssigned``) and headers naming its stream, version and position.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from uuid import UUID

import structlog

from broker import tracing
from broker.errors import Unroutable
from broker.publisher import Outgoing, Publisher
from contracts.headers import POSITION, STREAM, VERSION
from workers.runtime.messages import MESSAGE_TYPE
from workers.runtime.recipients import SingleRecipients
from workers.store.base import OutgoingRecord, RecordedEvent, stream_category

log = structlog.get_logger(__name__)

# one encoder for every event: json.dumps with options builds a new one per call
_ENVELOPE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _uuid(value: object, default: UUID) -> UUID:
    try:
        return UUID(str(value)) if value else default
    except ValueError:
        return default


def encode_event(record: RecordedEvent) -> OutgoingRecord:
    """The event's envelope, written straight from the recorded row.

    The row's data is the event's JSON as its model dumped it when it was appended, so it
    is not validated again here: a profile showed validating and dumping every event a
    second time, only to send what the store already holds. The version is the one it was
    recorded in; a consumer upcasts older ones as it would any message.
    """
    meta = record.metadata
    causation = meta.get("causation_id") or meta.get("message_id")
    envelope = {
        "id": str(record.id),
        "type": record.type,
        "version": record.schema_version,
        "correlation_id": str(_uuid(meta.get("correlation_id"), record.id)),
        "causation_id": str(_uuid(causation, record.id)) if causation else None,
        "sender": str(meta.get("worker") or "rally"),
        "sent_at": record.recorded_at.isoformat().replace("+00:00", "Z"),
        "payload": record.data,
    }
    return OutgoingRecord(
        exchange="events",
        routing_key=f"{stream_category(record.stream)}.{record.type}",
        body=_ENVELOPE.encode(envelope).encode(),
        message_id=str(record.id),
        headers={
            POSITION: str(record.position),
            STREAM: record.stream,
            VERSION: str(record.version),
            **tracing.stored_headers(meta),
        },
    )


class OutboxPublisher:
    """broker.publisher.Publisher behind the relay's ``publish_outbox`` protocol.

    A message no queue is bound for is dropped with a log line, not retried: an
    event nobody subscribes to, or a notice to an inbox that no longer exists,
    will not become deliverable by waiting, and retrying would hold back every
    later row of its stream.
    """

    def __init__(self, publisher: Publisher, singles: SingleRecipients | None = None) -> None:
        self.publisher = publisher
        self.topology = publisher.topology
        self.dropped = 0
        self.singles = singles  # inboxes of agents that registered with bundles: false

    async def publish_outbox(self, messages: Sequence[OutgoingRecord]) -> None:
        outgoing = [self._outgoing(m) for m in messages]
        if self.singles is not None:
            outgoing = [await self._alone_if_asked(m) for m in outgoing]
        results = await self.publisher.publish_each(outgoing)
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, Unroutable):
                self.dropped += 1
                log.debug(
                    "outbox.unroutable", exchange=message.exchange, routing_key=message.routing_key
                )
            elif isinstance(result, BaseException):
                raise result

    async def _alone_if_asked(self, message: Outgoing) -> Outgoing:
        if message.exchange != self.topology.inbox or self.singles is None:
            return message
        if await self.singles.alone(message.routing_key):
            return replace(message, bundle=False)
        return message

    def _outgoing(self, record: OutgoingRecord) -> Outgoing:
        return Outgoing(
            exchange=self.topology.resolve_exchange(record.exchange),
            routing_key=record.routing_key,
            body=record.body,
            message_id=record.message_id,
            headers=dict(record.headers),
            type=_type_of(record),
            bundle=True,
        )


def _type_of(record: OutgoingRecord) -> str | None:
    recorded = record.headers.get(MESSAGE_TYPE)
    if recorded:
        return str(recorded)
    # rows written before the type was kept: for events and commands the routing key ends
    # with it; a notice's key is its recipient, so it goes without
    tail = record.routing_key.rsplit(".", 1)[-1]
    return tail if tail[:1].isupper() else None
