"""What a commit hands on, built from what the adapter just wrote: the relay's rows, and
the events each append result carries (parsed when a caller first asks for them).

The fast path used to read its rows back (a join of outbox and events) and
decode them; the adapter already holds every value it wrote, so it builds the
same ``OutboxRow`` here instead. The results equal what ``load`` would return:
data and metadata are parsed from the very JSON text that was stored, headers
go through the same str conversion, ``recorded_at`` is the stored timestamp.
Likewise ``AppendResult.events`` equals a read of the appended positions, so a
caller can apply its own appends without reading them back.

Every consumer gets objects of its own (the relay's and the caller's events are
parsed separately): ``data`` is a mutable dict, and a caller changing it must not
change what the relay publishes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from workers.store.base import (
    AppendOutcome,
    AppendResult,
    OutboxMessage,
    OutboxRow,
    OutgoingRecord,
    RecordedEvent,
)
from workers.store.codec import loads
from workers.store.planner import BatchPlan, EventRow, OutboxSpec


def handed_rows(
    plan: BatchPlan, claimed: Sequence[tuple[int, OutboxSpec]], recorded_at: datetime
) -> list[OutboxRow]:
    """``claimed``: (outbox id, spec) of the rows born claimed, in id order."""
    if not claimed:
        return []
    events = {e.position: e for e in plan.events}
    parsed: dict[str, dict[str, Any]] = {}
    rows: list[OutboxRow] = []
    for row_id, spec in claimed:
        if spec.event_position is not None:
            event = _recorded(events[spec.event_position], recorded_at, parsed)
            rows.append(OutboxRow(id=row_id, stream=spec.stream, event=event))
        elif spec.message is not None:
            rows.append(OutboxRow(id=row_id, stream=spec.stream, message=outgoing(spec.message)))
    return rows


def recorded_outcomes(plan: BatchPlan, recorded_at: datetime) -> list[AppendOutcome]:
    """``plan.outcomes`` with each new result carrying its recorded events, in position
    order. Conflicts and duplicates (an idempotent repeat: nothing recorded now) are
    returned as they are."""
    if not plan.events:
        return plan.outcomes
    first = plan.events[0].position  # the planner assigns positions without gaps
    outcomes: list[AppendOutcome] = []
    for outcome in plan.outcomes:
        if isinstance(outcome, AppendResult) and not outcome.duplicate and outcome.positions:
            rows = [plan.events[p - first] for p in outcome.positions]
            build = partial(_stored_all, rows, recorded_at)
            outcome = AppendResult.recorded(outcome.positions, outcome.versions, build)
        outcomes.append(outcome)
    return outcomes


def _stored_all(rows: list[EventRow], recorded_at: datetime) -> tuple[RecordedEvent, ...]:
    """As a read returns them: data and metadata parsed from the stored text when asked."""
    return tuple(
        RecordedEvent.stored(
            r.position,
            r.stream,
            r.version,
            r.id,
            r.type,
            r.schema_version,
            r.data,
            r.metadata,
            recorded_at,
        )
        for r in rows
    )


def _recorded(
    row: EventRow, recorded_at: datetime, parsed: dict[str, dict[str, Any]]
) -> RecordedEvent:
    """``parsed``: metadata already parsed, by its JSON text. All events of one request
    share that text; metadata is flat (``codec.metadata_dict``), so a shallow copy gives
    each event one of its own, for a fraction of a parse."""
    metadata = parsed.get(row.metadata)
    if metadata is None:
        metadata = parsed[row.metadata] = loads(row.metadata)
    return RecordedEvent(
        row.position,
        row.stream,
        row.version,
        row.id,
        row.type,
        row.schema_version,
        loads(row.data),
        dict(metadata),
        recorded_at,
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
