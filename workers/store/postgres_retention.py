"""Retention for PostgreSQL: delete expired streams, import archived events, give space back.

``expire`` and ``import_rows`` run inside the append transaction (BEGIN and the
append lock), so nothing is appended between their checks and their COMMIT, and
imported positions, like appended ones, become visible in commit order.

Space: a DELETE leaves dead tuples; (auto)vacuum marks their space reusable and new
rows fill it, so the tables stop growing without any lock beyond a plain VACUUM's.
``reclaim`` runs that plain VACUUM on the tables retention empties, right away rather
than whenever autovacuum's thresholds fire. The files only shrink under
``VACUUM FULL`` (an exclusive lock for the table's whole rewrite: a maintenance
window), needed only after a one-off purge much larger than the steady load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from workers.store.base import ExpireResult, Expiry, RecordedEvent
from workers.store.codec import dumps
from workers.store.expiry import decide_expiry
from workers.store.postgres_schema import Conn, quote_ident
from workers.store.sqlite_retention import check_next_version

TABLES = ("events", "outbox", "processed_messages", "snapshots")


async def expire(conn: Conn, groups: Sequence[Expiry]) -> ExpireResult:
    streams = sorted({s for g in groups for s in g.streams})
    state = await conn.fetch(
        "SELECT s, (SELECT coalesce(max(version), 0) FROM events WHERE stream = s),"
        " EXISTS (SELECT 1 FROM outbox WHERE stream = s) FROM unnest($1::text[]) AS s",
        streams,
    )
    newest = await conn.fetchval("SELECT stream FROM events ORDER BY position DESC LIMIT 1")
    decision = decide_expiry(
        groups, {str(r[0]): int(r[1]) for r in state}, {str(r[0]) for r in state if r[2]}, newest
    )
    if not decision.streams:
        return ExpireResult(decision.deleted, decision.kept)
    events = _count(
        await conn.execute("DELETE FROM events WHERE stream = ANY($1)", decision.streams)
    )
    # Only timers are left of their outbox rows (a pending event row keeps the group).
    outbox = _count(
        await conn.execute(
            "DELETE FROM outbox WHERE timer_of = ANY($1) OR stream = ANY($1)", decision.streams
        )
    )
    await conn.execute("DELETE FROM snapshots WHERE stream = ANY($1)", decision.streams)
    processed = _count(
        await conn.execute("DELETE FROM processed_messages WHERE key = ANY($1)", decision.keys)
    )
    return ExpireResult(decision.deleted, decision.kept, events, outbox, processed)


async def import_rows(conn: Conn, events: Sequence[RecordedEvent]) -> tuple[int, int]:
    """As ``sqlite_retention.import_rows``: new positions, everything else kept."""
    present = {
        str(r[0])
        for r in await conn.fetch(
            "SELECT id FROM events WHERE id = ANY($1::uuid[])", [e.id for e in events]
        )
    }
    versions: dict[str, int] = {
        str(r[0]): int(r[1])
        for r in await conn.fetch(
            "SELECT s, (SELECT coalesce(max(version), 0) FROM events WHERE stream = s)"
            " FROM unnest($1::text[]) AS s",
            sorted({e.stream for e in events}),
        )
    }
    position = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
    rows: list[dict[str, object]] = []
    for event in events:
        if str(event.id) in present:
            continue
        check_next_version(event, versions)
        position += 1
        present.add(str(event.id))
        rows.append(
            {
                "p": position,
                "s": event.stream,
                "v": event.version,
                "i": str(event.id),
                "t": event.type,
                "sv": event.schema_version,
                "d": json.loads(dumps(event.data, "imported event data")),
                "m": json.loads(dumps(event.metadata, "imported event metadata")),
                "at": event.recorded_at.isoformat(),
            }
        )
    if rows:
        await conn.execute(
            "INSERT INTO events (position, stream, version, id, type, schema_version, data,"
            " metadata, recorded_at)"
            " SELECT p, s, v, i, t, sv, d, m, at FROM json_to_recordset($1::json)"
            " AS x(p bigint, s text, v int, i uuid, t text, sv int, d jsonb, m jsonb,"
            " at timestamptz)",
            json.dumps(rows, separators=(",", ":")),
        )
    return len(rows), len(events) - len(rows)


async def reclaim(conn: Conn, full: bool) -> None:
    """Plain VACUUM (reusable space) of retention's tables, or VACUUM FULL (smaller files,
    exclusive locks). Outside any transaction: VACUUM refuses to run inside one."""
    verb = "VACUUM (FULL, ANALYZE)" if full else "VACUUM (ANALYZE)"
    await conn.execute(f"{verb} {', '.join(TABLES)}")


async def size(conn: Conn) -> dict[str, int]:
    """Bytes of the store's tables with their indexes and TOAST, in this schema."""
    total = await conn.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'"
        " AND c.relname = ANY($1::text[])",
        list(TABLES),
    )
    return {"bytes": int(total)}


async def mark_expired(conn: Conn, table: str, task_ids: Sequence[str]) -> int | None:
    """As ``sqlite_retention.mark_expired``: None when the read model is not there."""
    columns = {
        str(r[0])
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
    }
    if not {"task_id", "expired"} <= columns:
        return None
    return _count(
        await conn.execute(
            f"UPDATE {quote_ident(table)} SET expired = true WHERE task_id::text = ANY($1)",
            list(task_ids),
        )
    )


def _count(status: str) -> int:
    return int(status.split()[-1])


async def min_position(conn: Conn, table: str) -> int | None:
    """As ``sqlite_retention.min_position``."""
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return None
    value = await conn.fetchval(f"SELECT min(position) FROM {quote_ident(table)}")
    return None if value is None else int(value)
