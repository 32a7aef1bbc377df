"""The archive boundary: where dead letters live once they are out of the broker.

Both adapters (SQLite, PostgreSQL) implement :class:`DeadLetterArchive`; one
contract test suite runs against both. Status moves one way: dead → replayed
or dead → purged. A replay *claims* the letters it is about to publish, so two
replays running at once never publish the same one twice; a claim older than
``stale_before`` belongs to a replay that crashed and may be taken over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol

from workers.dlq.model import DeadLetter, DeadLetterSummary, Query, ReplayRecord, Status


class ArchiveError(Exception):
    """Root of everything workers/dlq/archive raises."""


class ArchiveUnavailable(ArchiveError):
    """The database cannot be reached or stayed locked; nothing was acked because of it."""


class NotFound(ArchiveError):
    """No dead letter has this id (or id prefix)."""


class AmbiguousId(ArchiveError):
    """An id prefix matches more than one dead letter."""


class DeadLetterArchive(Protocol):
    async def start(self) -> None:
        """Connect and create or migrate the archive's own tables."""
        ...

    async def close(self) -> None: ...

    async def add(self, letters: Sequence[DeadLetter]) -> int:
        """Store all in one transaction; return how many were new. Idempotent per
        (dlq, message key, last death): a letter seen again (a crash between
        commit and ack) is not counted twice."""
        ...

    async def get(self, id_or_prefix: str) -> DeadLetter:
        """Everything kept about one dead letter, replays included."""
        ...

    async def load(self, ids: Sequence[str]) -> list[DeadLetter]:
        """Full records of exact ids, oldest death first; unknown ids are left out."""
        ...

    async def find(self, query: Query) -> list[DeadLetterSummary]:
        """Summaries matching ``query``, newest death first (or oldest, if asked)."""
        ...

    def scan(self, query: Query, *, batch: int = 500) -> AsyncIterator[DeadLetter]:
        """Full records matching ``query``, oldest first, fetched ``batch`` at a time."""
        ...

    async def counts(self, statuses: Sequence[Status] = ("dead",)) -> dict[tuple[str, str], int]:
        """How many per (queue, reason)."""
        ...

    async def queues(self) -> list[str]:
        """Every DLQ the archive has taken letters from (to keep draining it)."""
        ...

    async def claim(
        self, ids: Sequence[str], claim_id: str, *, now: datetime, stale_before: datetime
    ) -> list[str]:
        """Claim dead, unclaimed (or stale-claimed) letters for a replay; return those taken."""
        ...

    async def release(self, ids: Sequence[str], claim_id: str) -> None:
        """Give claims back (the publish failed): the letters stay dead."""
        ...

    async def mark_replayed(self, id: str, claim_id: str, record: ReplayRecord) -> bool:
        """After the broker confirmed the replay: status replayed, replay recorded.
        False when the claim was lost (another replay took over a stale claim)."""
        ...

    async def mark_purged(self, ids: Sequence[str], *, by: str, at: datetime) -> list[str]:
        """Dead, unclaimed letters become purged; return the ids that changed."""
        ...
