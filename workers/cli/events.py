"""`rally events dump|export|import`: the history as JSON Lines — a public format operators,
auditors and the retention archive read.

One event per line, always exactly these keys, in this order::

    {"position": 1, "stream": "task-3f2a", "version": 1, "type": "TaskSubmitted",
     "data": {...}, "metadata": {...}, "recorded_at": "2025-01-31T12:00:00.000000Z",
     "schema_version": 1, "id": "0190..."}

``recorded_at`` is ISO 8601 in UTC with microseconds and a ``Z``. ``schema_version``
and ``id`` (the event's id, unique in a store) came later, at the end: change the format
only additively, and say so in the changelog. ``rally events export`` writes the same
lines gzip-compressed; ``event_from_line`` reads either back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO
from uuid import UUID

from workers.store.base import EventStore, RecordedEvent

DUMP_KEYS = (
    "position",
    "stream",
    "version",
    "type",
    "data",
    "metadata",
    "recorded_at",
    "schema_version",
    "id",
)


class LineError(ValueError):
    """A line that is not one event of this format."""


def event_line(event: RecordedEvent) -> str:
    record: dict[str, Any] = {
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": event.recorded_at.astimezone(UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        "schema_version": event.schema_version,
        "id": str(event.id),
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def event_from_line(line: str) -> RecordedEvent:
    """A line back as the event it was. A line from before ``id`` existed is refused: an
    import needs the id to know an event it already holds."""
    try:
        raw = json.loads(line)
        recorded_at = datetime.fromisoformat(str(raw["recorded_at"]).replace("Z", "+00:00"))
        if recorded_at.tzinfo is None:
            raise LineError("recorded_at has no time zone")
        data, metadata = raw["data"], raw["metadata"]
        if not isinstance(data, dict) or not isinstance(metadata, dict):
            raise LineError("data and metadata must be JSON objects")
        return RecordedEvent(
            position=int(raw["position"]),
            stream=str(raw["stream"]),
            version=int(raw["version"]),
            id=UUID(str(raw["id"])),
            type=str(raw["type"]),
            schema_version=int(raw.get("schema_version", 1)),
            data=data,
            metadata=metadata,
            recorded_at=recorded_at.astimezone(UTC),
        )
    except LineError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise LineError(f"not an event line ({type(exc).__name__}: {exc})") from None


class Dumped(NamedTuple):
    written: int
    last_position: int  # of the last event written; the start position if none


async def dump_events(
    store: EventStore,
    out: TextIO,
    *,
    from_position: int = 0,
    stream_prefix: str | None = None,
    page_size: int = 1000,
) -> Dumped:
    """Write events after ``from_position`` (optionally only streams starting with
    ``stream_prefix``) to ``out``: how many, and where to go on from.

    Positions have gaps once retention has deleted old streams: a reader goes on from the
    last position it saw, never from a count."""
    written = 0
    cursor = from_position
    while True:
        page = await store.read_all(cursor, page_size, stream_prefix=stream_prefix)
        if not page:
            return Dumped(written, cursor)
        for event in page:
            out.write(event_line(event))
            out.write("\n")
        written += len(page)
        cursor = page[-1].position
