"""Which outbox rows may be published now without overtaking an earlier one of their stream.

Event rows carry their stream as an ordering key. A publisher may publish a
row only when every *pending* (unpublished) row of the same stream with a
lower id is either already gone (confirmed and deleted) or is in the very
batch it publishes, ahead of it. The adapters find, per stream, the lowest
pending id *outside* the batch (the "blocker"); this module does the rest.
Rows without a stream (side-effect messages, timers) are never held back.

The fast path needs no blocker lookup: the append transaction itself looks,
under the append lock, at the rows of each stream still pending (all have
lower ids, since ids grow). If one is not the local relay's own, it writes
its rows of that stream for the sweeper instead of handing them over
(``held``). If all are the relay's own (handed, not yet confirmed), it hands
its rows over chained to the newest of them (``after``): the relay publishes
them only once it has published that one, which it does in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


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


def split_pending(pending: Mapping[str, Sequence[Any]]) -> tuple[set[str], dict[str, int]]:
    """Per stream with pending rows, [newest pending id, whether one is not ours] as the
    append's state query returns it: (streams held for the sweeper, chained streams)."""
    held = {stream for stream, (_, theirs) in pending.items() if theirs}
    after = {stream: int(newest) for stream, (newest, theirs) in pending.items() if not theirs}
    return held, after
