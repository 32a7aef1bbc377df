"""Dead letters an operator can trust: archived whole, explained, replayed once, audited.

- :class:`DeadLetterMover` moves letters from every DLQ into the archive (ack after commit).
- :func:`open_archive` gives the archive (SQLite or PostgreSQL, by the store URL).
- :class:`Replayer` re-validates and republishes; :func:`purge` retires letters.
- :func:`explain` says why one died; :func:`dead_letter_counts` feeds `rally status`.
"""

from __future__ import annotations

from workers.dlq.archive import (
    AmbiguousId,
    ArchiveError,
    ArchiveUnavailable,
    DeadLetterArchive,
    NotFound,
    default_archive_url,
    open_archive,
)
from workers.dlq.directory import DlqDirectory, store_agent_ids
from workers.dlq.explain import Explanation, explain, headline
from workers.dlq.history import History, StoreHistory, operator
from workers.dlq.model import DeadLetter, DeadLetterSummary, Query, ReplayRecord, Status
from workers.dlq.mover import DeadLetterMover
from workers.dlq.purge import purge
from workers.dlq.replay import Replayer, ReplayReport
from workers.dlq.views import dead_letter_counts, export_jsonl

__all__ = [
    "AmbiguousId",
    "ArchiveError",
    "ArchiveUnavailable",
    "DeadLetter",
    "DeadLetterArchive",
    "DeadLetterMover",
    "DeadLetterSummary",
    "DlqDirectory",
    "Explanation",
    "History",
    "NotFound",
    "Query",
    "ReplayRecord",
    "ReplayReport",
    "Replayer",
    "Status",
    "StoreHistory",
    "dead_letter_counts",
    "default_archive_url",
    "explain",
    "export_jsonl",
    "headline",
    "open_archive",
    "operator",
    "purge",
    "store_agent_ids",
]
