"""Which expiry groups an adapter may delete — pure, shared by both adapters.

The adapter reads, under its write lock, each stream's current version, which
streams have outbox rows still pending, and the stream holding the newest event;
this decides. A group stays, with its reason, when:

- ``changed``: a stream moved past the version the caller exported (something was
  appended since: the export would be incomplete);
- ``outbox_pending``: an event of it is not yet published (the broker has been
  unreachable for as long as the retention): it goes once published;
- ``last_position``: it holds the store's newest event. Positions are
  ``max(position) + 1``; deleting the newest event would hand its position out again,
  and every reader following ``position > cursor`` (the allocator's catch-up, the
  registry, the dashboard, projections) would skip the new event. Keeping it means
  deletions only ever make gaps *below* the newest position, which such readers
  never notice.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from workers.store.base import Expiry


@dataclass(frozen=True, slots=True)
class ExpiryDecision:
    deleted: tuple[int, ...]
    kept: dict[int, str]
    streams: list[str]  # of the deleted groups, sorted
    keys: list[str]  # processed-message keys of the deleted groups, sorted


def decide_expiry(
    groups: Sequence[Expiry],
    versions: Mapping[str, int],
    pending: Collection[str],
    newest_stream: str | None,
) -> ExpiryDecision:
    deleted: list[int] = []
    kept: dict[int, str] = {}
    streams: set[str] = set()
    keys: set[str] = set()
    for index, group in enumerate(groups):
        if any(versions.get(s, 0) != v for s, v in group.streams.items()):
            kept[index] = "changed"
        elif any(s in pending for s in group.streams):
            kept[index] = "outbox_pending"
        elif newest_stream is not None and newest_stream in group.streams:
            kept[index] = "last_position"
        else:
            deleted.append(index)
            streams.update(group.streams)
            keys.update(group.processed_keys)
    return ExpiryDecision(tuple(deleted), kept, sorted(streams), sorted(keys))
