"""`rally events dump`: the history as JSON Lines — a public format operators and auditors read.

One event per line, always exactly these keys, in this order::

    {"position": 1, "stream": "task-3f2a", "version": 1, "type": "TaskSubmitted",
     "data": {...}, "metadata": {...}, "recorded_at": "2025-01-31T12:00:00.000000Z"}

``recorded_at`` is ISO 8601 in UTC with microseconds and a ``Z``. Change the
format only additively, and say so in the changelog.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any, TextIO

from workers.store.base import EventStore, RecordedEvent

DUMP_KEYS = ("position", "stream", "version", "type", "data", "metadata", "recorded_at")


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
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


async def dump_events(
    store: EventStore,
    out: TextIO,
    *,
    from_position: int = 0,
    stream_prefix: str | None = None,
    page_size: int = 1000,
) -> int:
    """Write events after ``from_position`` (optionally only streams starting with
    ``stream_prefix``) to ``out``; return how many were written."""
    written = 0
    cursor = from_position
    while True:
        page = await store.read_all(cursor, page_size, stream_prefix=stream_prefix)
        if not page:
            return written
        for event in page:
            out.write(event_line(event))
            out.write("\n")
        written += len(page)
        cursor = page[-1].position
