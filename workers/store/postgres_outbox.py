"""The outbox and lease SQL for PostgreSQL.

Unlike SQLite there is no global write lock here (the append lock is only for
appends), so every claim is a conditional UPDATE ... RETURNING: of two
relays racing for one row, exactly one gets it back. Times are the database
clock (``clock_timestamp()``), shared by every replica.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from workers.store.base import OutboxRow, OutgoingRecord
from workers.store.codec import loads
from workers.store.ordering import first_in_line, with_missing_as_blockers
from workers.store.postgres_schema import EVENT_COLUMNS, Conn, event_from_record

_EVENT_COLUMNS_E = ", ".join(f"e.{c.strip()}" for c in EVENT_COLUMNS.split(","))
_LATER = "clock_timestamp() + make_interval(secs => $2::float8)"

Row = tuple[int, str | None]


async def take_own(
    conn: Conn, owner: str, ids: Sequence[int], claim_seconds: float
) -> list[OutboxRow]:
    if not ids:
        return []
    # Still ours and unexpired (the sweeper has not taken them); renew while we publish.
    mine: list[Row] = [
        (r[0], r[1])
        for r in await conn.fetch(
            f"UPDATE outbox SET available_at = {_LATER}"
            " WHERE id = ANY($1::bigint[]) AND claimed_by = $3"
            " AND available_at > clock_timestamp() RETURNING id, stream",
            list(ids),
            claim_seconds,
            owner,
        )
    ]
    keep, hold = first_in_line(mine, await _blockers(conn, mine))
    if hold:  # behind another pending row of the stream: the sweeper keeps the order
        await release(conn, hold, 0.0)
    return await load(conn, keep)


async def claim_due(conn: Conn, owner: str, limit: int, claim_seconds: float) -> list[OutboxRow]:
    due: list[Row] = [
        (r[0], r[1])
        for r in await conn.fetch(
            "SELECT id, stream FROM outbox WHERE available_at <= clock_timestamp()"
            " ORDER BY id LIMIT $1",
            limit,
        )
    ]
    blockers = await _blockers(conn, due)
    keep, _ = first_in_line(due, blockers)
    if not keep:
        return []
    got = {
        int(r[0])
        for r in await conn.fetch(
            f"UPDATE outbox SET available_at = {_LATER}, claimed_by = $3"
            " WHERE id = ANY($1::bigint[]) AND available_at <= clock_timestamp() RETURNING id",
            keep,
            claim_seconds,
            owner,
        )
    }
    if len(got) < len(keep):
        # Another relay took some rows first (two leaders for a moment): whatever we got
        # behind one of its rows must wait, or we would overtake it.
        rows = [r for r in due if r[0] in set(keep)]
        blockers = with_missing_as_blockers(rows, got, blockers)
        keep, hold = first_in_line([r for r in rows if r[0] in got], blockers)
        if hold:
            await release(conn, hold, 0.0)
    return await load(conn, keep)


async def release(conn: Conn, ids: Sequence[int], delay_seconds: float) -> None:
    await conn.execute(
        f"UPDATE outbox SET available_at = {_LATER}, claimed_by = NULL"
        " WHERE id = ANY($1::bigint[])",
        list(ids),
        delay_seconds,
    )


async def acquire_lease(conn: Conn, name: str, owner: str, ttl_seconds: float) -> bool:
    row = await conn.fetchrow(
        "INSERT INTO leases (name, owner, expires_at)"
        " VALUES ($1, $3, clock_timestamp() + make_interval(secs => $2::float8))"
        " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
        " expires_at = excluded.expires_at"
        " WHERE leases.owner = excluded.owner OR leases.expires_at <= clock_timestamp()"
        " RETURNING owner",
        name,
        ttl_seconds,
        owner,
    )
    return row is not None


async def load(conn: Conn, ids: Sequence[int]) -> list[OutboxRow]:
    if not ids:
        return []
    rows = await conn.fetch(
        "SELECT o.id, o.stream, o.exchange, o.routing_key, o.body, o.message_id, o.headers,"
        f" {_EVENT_COLUMNS_E}"
        " FROM outbox o LEFT JOIN events e ON e.position = o.event_position"
        " WHERE o.id = ANY($1::bigint[]) ORDER BY o.id",
        list(ids),
    )
    return [_outbox_row(r) for r in rows]


def _outbox_row(r: asyncpg.Record) -> OutboxRow:
    if r[7] is not None:
        return OutboxRow(id=int(r[0]), stream=r[1], event=event_from_record(r[7:16]))
    message = OutgoingRecord(
        exchange=r[2],
        routing_key=r[3],
        body=bytes(r[4]),
        message_id=r[5],
        headers={str(k): str(v) for k, v in loads(r[6]).items()},
    )
    return OutboxRow(id=int(r[0]), stream=r[1], message=message)


async def _blockers(conn: Conn, rows: Sequence[Row]) -> dict[str, int]:
    """Per stream of ``rows``: the lowest pending outbox id that is not one of ``rows``.

    Walks the (stream, id) index from the stream's oldest pending row, so the cost
    is the rows it skips (ours), not the stream's backlog.
    """
    streams = sorted({s for _, s in rows if s is not None})
    if not streams:
        return {}
    found = await conn.fetch(
        "SELECT s, (SELECT o.id FROM outbox o WHERE o.stream = s"
        " AND o.id <> ALL($2::bigint[]) ORDER BY o.id LIMIT 1)"
        " FROM unnest($1::text[]) AS s",
        streams,
        [i for i, _ in rows],
    )
    return {str(s): int(i) for s, i in found if i is not None}
