"""Dead letters have no projection: the DLQ archive (tables beside the store) is their read
model. What `rally status` and the dashboard ask of it answers from the waiting letters by
index, however many letters were replayed or purged before."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.dead_letters import make_letter
from workers.dlq.archive import open_archive
from workers.dlq.model import Query
from workers.dlq.views import dead_letter_counts

RECENT = 100  # as the dashboard asks (workers/dashboard/service.py)


async def views(archive: Any) -> tuple[dict[tuple[str, str], int], list[str]]:
    """What `rally status` (counts) and the dashboard (counts, the newest few) read."""
    counts = await dead_letter_counts(archive)
    recent = await archive.find(Query(statuses=("dead",), limit=RECENT))
    return counts, [s.id for s in recent]


async def test_only_waiting_letters_are_counted_and_listed(any_store_url: str) -> None:
    archive = open_archive(any_store_url)
    await archive.start()
    try:
        letters = [make_letter(n, dlq="ns.q.tasks.dlq") for n in range(12)]
        await archive.add(letters)
        handled = [x.id for x in letters[:9]]  # the history an operator has dealt with
        assert sorted(await archive.mark_purged(handled, by="ops", at=datetime.now(UTC))) == sorted(
            handled
        )
        counts, recent = await views(archive)
        waiting = letters[9:]
        assert sum(counts.values()) == len(waiting)
        assert recent == [x.id for x in reversed(waiting)]  # newest death first
    finally:
        await archive.close()


async def test_the_queries_are_index_searches_not_scans(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    archive = open_archive(f"sqlite:///{path}")
    await archive.start()
    try:
        await archive.add([make_letter(n, dlq="ns.q.tasks.dlq") for n in range(20)])
        statements: list[str] = []
        await archive._db.set_trace_callback(statements.append)  # type: ignore[attr-defined]
        await views(archive)
        await archive._db.set_trace_callback(None)  # type: ignore[attr-defined]
    finally:
        await archive.close()
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2
    plain = sqlite3.connect(path)
    try:
        for sql in selects:
            plan = [str(row[3]) for row in plain.execute(f"EXPLAIN QUERY PLAN {sql}")]
            assert any(step.startswith("SEARCH dlq_letters USING") for step in plan), (sql, plan)
            assert not any(step.startswith("SCAN dlq_letters") for step in plan), (sql, plan)
    finally:
        plain.close()
