"""The rows a commit hands the relay, built from what the adapter just wrote.

The fast path used to read its rows back (a join of outbox and events) and
decode them; the adapter already holds every value it wrote, so it builds the
same ``OutboxRow`` here instead. The results equal what ``load`` would return:
data and metadata are parsed from the very JSON text that was stored, headers
go through the same str conversion, ``recorded_at`` is the stored timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from workers.store.base import OutboxMessage, OutboxRow, OutgoingRecord, RecordedEvent
from workers.store.codec import loads
from workers.store.planner import BatchPlan, EventRow, OutboxSpec


def handed_rows(
    plan: BatchPlan, claimed: Sequence[tuple[int, OutboxSpec]], recorded_at: datetime
) -> list[OutboxRow]:
    """``claimed``: (outbox id, spec) of the rows born claimed, in id order."""
    if not claimed:
        return []
    events = {e.position: e for e in plan.events}
    rows: list[OutboxRow] = []
    for row_id, spec in claimed:
        if spec.event_position is not None:
            event = recorded_event(events[spec.event_position], recorded_at)
            rows.append(OutboxRow(id=row_id, stream=spec.stream, event=event))
        elif spec.message is not None:
            rows.append(OutboxRow(id=row_id, stream=spec.stream, message=outgoing(spec.message)))
    return rows


def recorded_event(row: EventRow, recorded_at: datetime) -> RecordedEvent:
    return RecordedEvent(
        position=row.position,
        stream=row.stream,
        version=row.version,
        id=row.id,
        type=row.type,
        schema_version=row.schema_version,
        data=loads(row.data),
        metadata=loads(row.metadata),
        recorded_at=recorded_at,
    )


def outgoing(message: OutboxMessage) -> OutgoingRecord:
    # As stored and read back: the body as bytes, headers as a JSON object of strings.
    return OutgoingRecord(
        exchange=message.exchange,
        routing_key=message.routing_key,
        body=bytes(message.body),
        message_id=message.message_id,
        headers={str(k): str(v) for k, v in message.headers.items()},
    )
