"""The SQLite schema, all of it, and the migrations that build it.

A migration is a list of statements; ``MIGRATIONS[n]`` takes the schema from
version n to n + 1. ``migrate`` runs the missing ones inside one write
transaction (BEGIN IMMEDIATE, the adapter's), so two processes starting at once apply each
migration once. Add a migration by appending to the list — never edit one
that has shipped.

Column notes:
- ``events.position`` is the rowid, assigned by the append planner without gaps.
- JSON columns are TEXT. Times in ``events``/``snapshots`` are ISO 8601 UTC
  text; outbox and lease times are Unix seconds (REAL) because the relay
  compares them on every poll.
- ``outbox.available_at``: when the sweeper may take the row. A row the local
  relay will publish is born claimed (now + grace); a timer is its
  ``not_before``; anything else is now.
- ``outbox.timer_of``: the stream a timer watches; an append that cancels that
  stream's timers deletes the row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from workers.store.base import RecordedEvent

EVENT_COLUMNS = "position, stream, version, id, type, schema_version, data, metadata, recorded_at"

MIGRATIONS: list[list[str]] = [
    [
        """
        CREATE TABLE events (
            position       INTEGER PRIMARY KEY,
            stream         TEXT    NOT NULL,
            version        INTEGER NOT NULL,
            id             TEXT    NOT NULL,
            type           TEXT    NOT NULL,
            schema_version INTEGER NOT NULL,
            data           TEXT    NOT NULL,
            metadata       TEXT    NOT NULL,
            recorded_at    TEXT    NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX events_stream_version ON events (stream, version)",
        "CREATE UNIQUE INDEX events_id ON events (id)",
        """
        CREATE TABLE processed_messages (
            key         TEXT PRIMARY KEY,
            result      TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE snapshots (
            stream   TEXT PRIMARY KEY,
            version  INTEGER NOT NULL,
            state    TEXT    NOT NULL,
            saved_at TEXT    NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE outbox (
            id             INTEGER PRIMARY KEY AUTOINCREMENT,
            stream         TEXT,
            event_position INTEGER,
            exchange       TEXT,
            routing_key    TEXT,
            body           BLOB,
            message_id     TEXT,
            headers        TEXT,
            available_at   REAL NOT NULL,
            claimed_by     TEXT
        )
        """,
        "CREATE INDEX outbox_available_at ON outbox (available_at)",
        "CREATE INDEX outbox_stream_id ON outbox (stream, id)",
        """
        CREATE TABLE leases (
            name       TEXT PRIMARY KEY,
            owner      TEXT NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
    ],
    [
        # the stream a timer watches, so an append can cancel it (OutboxMessage.timer_of)
        "ALTER TABLE outbox ADD COLUMN timer_of TEXT",
        "CREATE INDEX outbox_timer_of ON outbox (timer_of) WHERE timer_of IS NOT NULL",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; return the version found before.

    Runs inside a write transaction (``sqlite_conn.write_transaction``), on the
    connection's thread."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    rows = db.execute("SELECT version FROM schema_version").fetchall()
    found = int(rows[0][0]) if rows else 0
    if not rows:
        db.execute("INSERT INTO schema_version (version) VALUES (0)")
    for statements in MIGRATIONS[found:]:
        for statement in statements:
            db.execute(statement)
    if found < SCHEMA_VERSION:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
    return found


def event_from_row(row: Sequence[Any]) -> RecordedEvent:
    """An ``events`` row, selected as ``EVENT_COLUMNS``, as a RecordedEvent."""
    return RecordedEvent.stored(  # data and metadata parsed when first read
        int(row[0]),
        row[1],
        int(row[2]),
        UUID(row[3]),
        row[4],
        int(row[5]),
        row[6],
        row[7],
        datetime.fromisoformat(row[8]),
    )
