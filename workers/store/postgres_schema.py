"""The PostgreSQL schema, all of it, and the migrations that build it.

``MIGRATIONS[n]`` takes the schema from version n to n + 1. ``migrate`` runs
the missing ones in one transaction under an advisory lock, so replicas that
start together apply each migration once. Append new migrations; never edit
one that has shipped.

Column notes:
- ``events.position`` is assigned by the append planner under the append lock:
  gap-free and visible in commit order (see postgres.py).
- JSON columns are JSONB; times are timestamptz from the database clock, so
  replicas on machines with skewed clocks still agree on claims and leases.
- ``outbox.id`` comes from ``outbox_id_seq``, reserved in blocks under the
  append lock, so outbox ids also grow in commit order.
- ``outbox.available_at``: when the sweeper may take the row (a fresh row is
  claimed by its writer's relay until now + grace; a timer is its not_before).
- ``outbox.timer_of``: the stream a timer watches; an append that cancels that
  stream's timers deletes the row.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from workers.store.base import RecordedEvent
from workers.store.codec import loads

EVENT_COLUMNS = "position, stream, version, id, type, schema_version, data, metadata, recorded_at"

# A connection, straight or from the pool.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# Taken by every migration run, database-wide: start-up only, contention is harmless.
MIGRATE_LOCK_KEY = 0x52414C4C_0001

MIGRATIONS: list[list[str]] = [
    [
        """
        CREATE TABLE events (
            position       bigint      PRIMARY KEY,
            stream         text        NOT NULL,
            version        integer     NOT NULL,
            id             uuid        NOT NULL,
            type           text        NOT NULL,
            schema_version integer     NOT NULL,
            data           jsonb       NOT NULL,
            metadata       jsonb       NOT NULL,
            recorded_at    timestamptz NOT NULL,
            CONSTRAINT events_stream_version UNIQUE (stream, version),
            CONSTRAINT events_id UNIQUE (id)
        )
        """,
        """
        CREATE TABLE processed_messages (
            key         text        PRIMARY KEY,
            result      jsonb       NOT NULL,
            recorded_at timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE snapshots (
            stream   text        PRIMARY KEY,
            version  integer     NOT NULL,
            state    jsonb       NOT NULL,
            saved_at timestamptz NOT NULL
        )
        """,
        "CREATE SEQUENCE outbox_id_seq",
        """
        CREATE TABLE outbox (
            id             bigint      PRIMARY KEY,
            stream         text,
            event_position bigint,
            exchange       text,
            routing_key    text,
            body           bytea,
            message_id     text,
            headers        jsonb,
            available_at   timestamptz NOT NULL,
            claimed_by     text
        )
        """,
        "CREATE INDEX outbox_available_at ON outbox (available_at)",
        "CREATE INDEX outbox_stream_id ON outbox (stream, id)",
        """
        CREATE TABLE leases (
            name       text        PRIMARY KEY,
            owner      text        NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """,
    ],
    [
        # the stream a timer watches, so an append can cancel it (OutboxMessage.timer_of)
        "ALTER TABLE outbox ADD COLUMN timer_of text",
        "CREATE INDEX outbox_timer_of ON outbox (timer_of) WHERE timer_of IS NOT NULL",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def append_lock_key(schema: str) -> int:
    """The advisory lock every append takes: one per schema (one store per schema)."""
    return 0x52414C4C_0000_0000 | zlib.crc32(f"rallypoint.append:{schema}".encode())


async def migrate(conn: Conn, schema: str | None) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; return the version found before."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK_KEY)
        if schema:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        found = await conn.fetchval("SELECT version FROM schema_version")
        if found is None:
            await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            found = 0
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                await conn.execute(statement)
        if found < SCHEMA_VERSION:
            await conn.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION)
    return int(found)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def event_from_record(row: asyncpg.Record | Sequence[Any]) -> RecordedEvent:
    """An ``events`` row, selected as ``EVENT_COLUMNS``, as a RecordedEvent."""
    data, metadata = row[6], row[7]
    if not (isinstance(data, str) and isinstance(metadata, str)):  # parsed by a codec
        return RecordedEvent(
            int(row[0]),
            row[1],
            int(row[2]),
            UUID(bytes=row[3].bytes),
            row[4],
            int(row[5]),
            loads(data),
            loads(metadata),
            row[8],
        )
    return RecordedEvent.stored(  # data and metadata parsed when first read
        int(row[0]),
        row[1],
        int(row[2]),
        UUID(bytes=row[3].bytes),
        row[4],
        int(row[5]),
        data,
        metadata,
        row[8],
    )
