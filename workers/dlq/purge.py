"""Purge: an operator decides dead letters will never be replayed. Kept, marked, recorded.

The row stays (status ``purged``) so the archive still answers "what happened
to message X"; the history gets a ``DeadLetterPurged`` with who did it.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from contracts import DeadLetterPurged
from workers.dlq.archive import DeadLetterArchive
from workers.dlq.history import History
from workers.runtime.clock import Clock, SystemClock

log = structlog.get_logger(__name__)


async def purge(
    archive: DeadLetterArchive,
    ids: Sequence[str],
    *,
    by: str,
    history: History | None,
    clock: Clock | None = None,
) -> list[str]:
    """Purge the dead (and not being replayed) letters among ``ids``; return those purged."""
    at = (clock or SystemClock()).now()
    changed = await archive.mark_purged(ids, by=by, at=at)
    for letter in await archive.load(changed):
        log.info("dlq.purged", dead_letter_id=letter.id, message_id=letter.message_id, by=by)
        if history is None:
            continue
        event = DeadLetterPurged(
            dead_letter_id=letter.id,
            queue=letter.queue,
            reason=letter.reason,
            message_id=letter.message_id,
            message_type=letter.message_type,
            by=by,
            purged_at=at,
        )
        try:
            await history.record(letter.id, event, key=f"dlq-purged:{letter.id}")
        except Exception:  # the archive already says purged; the audit line is what failed
            log.exception("dlq.history_failed", dead_letter_id=letter.id)
    return changed
