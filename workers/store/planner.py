"""Turn a batch of append requests into rows to insert — pure, no I/O.

Both adapters do the same thing inside their append transaction: take the
write lock, read the current versions of the streams involved, the results of
idempotency keys already applied and the last global position, then call
``plan_batch`` and insert what it returns. Because the lock serializes every
append, what was read stays true until commit, so the checks here are exact
(the unique (stream, version) index is only a backstop).

Outbox rows: one per event someone subscribes to (``publishes``; all when it is None)
and one per side-effect message. A request's ``cancel_timers_of`` drops the timers
earlier requests of the batch planned for those streams, and names the streams
(``BatchPlan.cancel``) whose timers already in the table the adapter deletes before
it inserts this batch's rows.

Positions are assigned here, ``last_position + 1`` onwards, without gaps:
under the lock no one else can take them, and commit order equals position
order — which is what lets readers follow ``position > cursor`` safely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from workers.store.base import (
    AppendOutcome,
    AppendRequest,
    AppendResult,
    OutboxMessage,
    Publishes,
    stream_category,
)
from workers.store.codec import dumps, metadata_dict, result_to_json
from workers.store.errors import ConcurrencyError, StoreError


@dataclass(frozen=True, slots=True)
class EventRow:
    position: int
    stream: str
    version: int
    id: UUID
    type: str
    schema_version: int
    data: str  # JSON text
    metadata: str  # JSON text


@dataclass(frozen=True, slots=True)
class OutboxSpec:
    """An outbox row to write: an event's (by position) or a side-effect message."""

    stream: str | None
    event_position: int | None = None
    message: OutboxMessage | None = None


@dataclass(slots=True)
class BatchPlan:
    outcomes: list[AppendOutcome] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    outbox: list[OutboxSpec] = field(default_factory=list)
    processed: list[tuple[str, str]] = field(default_factory=list)  # (key, result JSON)
    cancel: set[str] = field(default_factory=set)  # streams whose stored timers to delete


def streams_of(requests: Iterable[AppendRequest]) -> list[str]:
    return sorted({a.stream for r in requests for a in r.appends})


def keys_of(requests: Iterable[AppendRequest]) -> list[str]:
    return sorted({r.idempotency_key for r in requests if r.idempotency_key is not None})


def plan_batch(
    requests: Sequence[AppendRequest],
    versions: Mapping[str, int],
    processed: Mapping[str, AppendResult],
    last_position: int,
    publishes: Publishes | None = None,
) -> BatchPlan:
    """Decide each request in order against the state left by the ones before it."""
    plan = BatchPlan()
    current = dict(versions)
    seen = dict(processed)
    position = last_position
    for request in requests:
        key = request.idempotency_key
        if key is not None and key in seen:
            plan.outcomes.append(seen[key])
            continue
        # Check every stream first so a conflicting request writes nothing.
        trial = dict(current)
        conflict: ConcurrencyError | None = None
        for part in request.appends:
            _validate(part.stream, part.expected_version)
            actual = trial.get(part.stream, 0)
            if part.expected_version is not None and part.expected_version != actual:
                conflict = ConcurrencyError(part.stream, part.expected_version, actual)
                break
            trial[part.stream] = actual + len(part.events)
        if conflict is not None:
            plan.outcomes.append(conflict)
            continue
        meta = dumps(metadata_dict(request.metadata), "metadata")
        positions: list[int] = []
        result_versions: dict[str, int] = {}
        if request.cancel_timers_of:
            _cancel(plan, request.cancel_timers_of)
        for part in request.appends:
            version = current.get(part.stream, 0)
            category = stream_category(part.stream)
            for event in part.events:
                position += 1
                version += 1
                positions.append(position)
                plan.events.append(
                    EventRow(
                        position=position,
                        stream=part.stream,
                        version=version,
                        id=event.id,
                        type=event.type,
                        schema_version=event.schema_version,
                        data=dumps(event.data, f"data of event {event.type}"),
                        metadata=meta,
                    )
                )
                if publishes is None or publishes(category, event.type):
                    plan.outbox.append(OutboxSpec(stream=part.stream, event_position=position))
            current[part.stream] = version
            result_versions[part.stream] = version
        plan.outbox.extend(OutboxSpec(stream=None, message=m) for m in request.outbox)
        result = AppendResult(tuple(positions), result_versions, duplicate=False)
        plan.outcomes.append(result)
        if key is not None:
            seen[key] = AppendResult(result.positions, result.versions, duplicate=True)
            plan.processed.append((key, result_to_json(result)))
    return plan


def _cancel(plan: BatchPlan, streams: Sequence[str]) -> None:
    """Drop the timers of ``streams`` planned so far; have the stored ones deleted."""
    cancelled = set(streams)
    plan.cancel |= cancelled
    plan.outbox = [
        spec
        for spec in plan.outbox
        if spec.message is None or spec.message.timer_of not in cancelled
    ]


def _validate(stream: str, expected_version: int | None) -> None:
    if not stream:
        raise StoreError("stream name is empty")
    if expected_version is not None and expected_version < 0:
        raise StoreError(f"stream {stream!r}: expected version {expected_version} is negative")
