"""Which outbox rows may be published now without overtaking an earlier one of their stream.

Event rows carry their stream as an ordering key. A publisher may publish a
row only when every *pending* (unpublished) row of the same stream with a
lower id is either already gone (confirmed and deleted) or is in the very
batch it publishes, ahead of it. The adapters find, per stream, the lowest
pending id *outside* the batch (the "blocker"); this module does the rest.
Rows without a stream (side-effect messages, timers) are never held back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def first_in_line(
    rows: Sequence[tuple[int, str | None]], blockers: Mapping[str, int]
) -> tuple[list[int], list[int]]:
    """Split ``rows`` (id, stream) into (publishable, held back) ids, each in id order."""
    keep: list[int] = []
    hold: list[int] = []
    for row_id, stream in sorted(rows):
        blocker = blockers.get(stream) if stream is not None else None
        if blocker is not None and blocker < row_id:
            hold.append(row_id)
        else:
            keep.append(row_id)
    return keep, hold


def with_missing_as_blockers(
    rows: Sequence[tuple[int, str | None]], got: set[int], blockers: Mapping[str, int]
) -> dict[str, int]:
    """Rows we meant to claim but someone else holds block their stream too."""
    merged = dict(blockers)
    for row_id, stream in rows:
        if row_id not in got and stream is not None:
            merged[stream] = min(merged.get(stream, row_id), row_id)
    return merged
