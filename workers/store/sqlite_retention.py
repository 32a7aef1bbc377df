"""Retention for SQLite: delete expired streams, import archived events, give space back.

Plain functions on a sqlite3 connection, run by the adapter on its writer's thread
(``expire`` and ``import_rows`` inside its write transaction, so the checks under the
write lock stay true until COMMIT).

Space: a database created by this release has ``auto_vacuum=INCREMENTAL`` (set by
``sqlite_conn`` before the first table exists), so ``incremental_vacuum`` hands the
pages freed by a deletion back to the file system. Until then they sit on the
freelist and SQLite reuses them for new rows, so the file stops growing either way.
A file created before has ``auto_vacuum=NONE``; one ``VACUUM`` (``rally events prune
--vacuum``) rewrites it with the incremental mode on.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from workers.store.base import ExpireResult, Expiry, RecordedEvent
from workers.store.codec import dumps
from workers.store.errors import StoreError
from workers.store.expiry import decide_expiry

AUTO_VACUUM_INCREMENTAL = 2


def expire(groups: Sequence[Expiry], db: sqlite3.Connection) -> ExpireResult:
    """Delete each group's streams with their outbox timers, snapshots and processed keys,
    unless ``decide_expiry`` keeps it. Inside the write transaction."""
    streams = sorted({s for g in groups for s in g.streams})
    state = db.execute(
        "SELECT s.value, (SELECT coalesce(max(version), 0) FROM events WHERE stream = s.value),"
        " EXISTS (SELECT 1 FROM outbox WHERE stream = s.value) FROM json_each(?) AS s",
        (json.dumps(streams),),
    ).fetchall()
    last = db.execute("SELECT stream FROM events ORDER BY position DESC LIMIT 1").fetchone()
    decision = decide_expiry(
        groups,
        {str(r[0]): int(r[1]) for r in state},
        {str(r[0]) for r in state if r[2]},
        last[0] if last else None,
    )
    if not decision.streams:
        return ExpireResult(decision.deleted, decision.kept)
    names = json.dumps(decision.streams)
    inside = "(SELECT value FROM json_each(?))"
    events = db.execute(f"DELETE FROM events WHERE stream IN {inside}", (names,)).rowcount
    # Only timers are left of their outbox rows (a pending event row keeps the group).
    outbox = db.execute(
        f"DELETE FROM outbox WHERE timer_of IN {inside} OR stream IN {inside}", (names, names)
    ).rowcount
    db.execute(f"DELETE FROM snapshots WHERE stream IN {inside}", (names,))
    processed = db.execute(
        f"DELETE FROM processed_messages WHERE key IN {inside}", (json.dumps(decision.keys),)
    ).rowcount
    return ExpireResult(decision.deleted, decision.kept, events, outbox, processed)


def import_rows(events: Sequence[RecordedEvent], db: sqlite3.Connection) -> tuple[int, int]:
    """Append archived events at new positions, keeping stream, version, id and
    recorded_at; an id already in the store is skipped. (imported, skipped)."""
    ids = json.dumps([str(e.id) for e in events])
    present = {
        str(r[0])
        for r in db.execute(
            "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))", (ids,)
        )
    }
    streams = json.dumps(sorted({e.stream for e in events}))
    versions: dict[str, int] = {
        str(r[0]): int(r[1])
        for r in db.execute(
            "SELECT s.value, (SELECT coalesce(max(version), 0) FROM events WHERE stream = s.value)"
            " FROM json_each(?) AS s",
            (streams,),
        )
    }
    ((position,),) = db.execute("SELECT coalesce(max(position), 0) FROM events").fetchall()
    rows: list[tuple[Any, ...]] = []
    for event in events:
        if str(event.id) in present:
            continue
        check_next_version(event, versions)
        position += 1
        present.add(str(event.id))
        rows.append(
            (
                position,
                event.stream,
                event.version,
                str(event.id),
                event.type,
                event.schema_version,
                dumps(event.data, "imported event data"),
                dumps(event.metadata, "imported event metadata"),
                event.recorded_at.isoformat(timespec="microseconds"),
            )
        )
    db.executemany(
        "INSERT INTO events (position, stream, version, id, type, schema_version, data,"
        " metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(rows), len(events) - len(rows)


def check_next_version(event: RecordedEvent, versions: dict[str, int]) -> None:
    """An imported event must be its stream's next version; record that it now is."""
    current = versions.get(event.stream, 0)
    if event.version != current + 1:
        raise StoreError(
            f"cannot import {event.stream} version {event.version} (event {event.id}):"
            f" the store holds version {current} of that stream"
        )
    versions[event.stream] = event.version


def reclaim(full: bool, db: sqlite3.Connection) -> int:
    """Give freed pages back to the file system; how many pages the file lost.

    Not in a transaction: ``incremental_vacuum`` and ``VACUUM`` take the write lock
    themselves (VACUUM refuses to run inside one)."""
    before = _pages(db)
    mode = int(db.execute("PRAGMA auto_vacuum").fetchone()[0])
    if full:
        if mode != AUTO_VACUUM_INCREMENTAL:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect with this VACUUM
        db.execute("VACUUM")
    elif mode == AUTO_VACUUM_INCREMENTAL:
        db.execute("PRAGMA incremental_vacuum").fetchall()
    # WAL: the main file shrinks at a checkpoint; take it now rather than at some later one.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return before - _pages(db)


def size(db: sqlite3.Connection) -> dict[str, int]:
    """page_size, pages in the file, pages free for reuse, bytes."""
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    pages = _pages(db)
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    return {"page_size": page_size, "pages": pages, "free_pages": free, "bytes": pages * page_size}


def _pages(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA page_count").fetchone()[0])


def mark_expired(table: str, task_ids: Sequence[str], db: sqlite3.Connection) -> int | None:
    """Set ``expired`` on the read model's rows of these tasks; None if the table (or its
    column) is not there (the read model is not deployed in this store yet)."""
    columns = {str(r[1]) for r in db.execute(f'PRAGMA table_info("{table}")')}
    if not {"task_id", "expired"} <= columns:
        return None
    return db.execute(
        f'UPDATE "{table}" SET expired = 1 WHERE task_id IN (SELECT value FROM json_each(?))',
        (json.dumps(list(task_ids)),),
    ).rowcount


def min_position(table: str, db: sqlite3.Connection) -> int | None:
    """The lowest ``position`` in ``table`` (the read models' checkpoints); None if there
    is no such table or no row."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchall():
        return None
    (value,) = db.execute(f'SELECT min(position) FROM "{table}"').fetchone()
    return None if value is None else int(value)
