"""The outbox and lease SQL for SQLite, run inside the adapter's write transaction.

Plain functions on a sqlite3 connection: the adapter runs each whole transaction
on the connection's thread, as one hop (see sqlite_conn.py).

Holding SQLite's write lock makes each function atomic against appends and
other relays: a row's claim cannot change between the check and the update.
Times are Unix seconds from this machine's clock (SQLite is one machine).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from workers.store.base import OutboxMessage, OutboxRow, OutgoingRecord
from workers.store.codec import dumps, loads
from workers.store.ordering import first_in_line
from workers.store.sqlite_schema import EVENT_COLUMNS, event_from_row

_EVENT_COLUMNS_E = ", ".join(f"e.{c.strip()}" for c in EVENT_COLUMNS.split(","))

MessageColumns = tuple[str | None, str | None, bytes | None, str | None, str | None, str | None]


def message_columns(message: OutboxMessage | None) -> MessageColumns:
    """exchange, routing_key, body, message_id, headers, timer_of — all NULL for an event."""
    if message is None:
        return (None, None, None, None, None, None)
    return (
        message.exchange,
        message.routing_key,
        bytes(message.body),
        message.message_id,
        dumps(dict(message.headers), "outbox headers"),
        message.timer_of,
    )


def cancel_timers(db: sqlite3.Connection, streams: Sequence[str]) -> list[int]:
    """Delete the unpublished timers of ``streams``; their ids."""
    if not streams:
        return []
    rows = _rows(
        db,
        "DELETE FROM outbox WHERE timer_of IN (SELECT value FROM json_each(?)) RETURNING id",
        (json.dumps(sorted(streams)),),
    )
    return sorted(int(r[0]) for r in rows)


def take_own(
    db: sqlite3.Connection, owner: str, ids: Sequence[int], claim_seconds: float, now: float
) -> list[OutboxRow]:
    if not ids:
        return []
    # Still ours and not yet expired: the sweeper has not taken them. Renew the claim so
    # it cannot while we publish.
    mine = _rows(
        db,
        "UPDATE outbox SET available_at = ? WHERE id IN (SELECT value FROM json_each(?))"
        " AND claimed_by = ? AND available_at > ? RETURNING id, stream",
        (now + claim_seconds, json.dumps(list(ids)), owner, now),
    )
    keep, hold = first_in_line(mine, _blockers(db, mine))
    if hold:  # behind another pending row of the stream: the sweeper keeps the order
        release(db, hold, now)
    return load(db, keep)


def claim_due(
    db: sqlite3.Connection, owner: str, limit: int, claim_seconds: float, now: float
) -> list[OutboxRow]:
    due = _rows(
        db,
        "SELECT id, stream FROM outbox WHERE available_at <= ? ORDER BY id LIMIT ?",
        (now, limit),
    )
    keep, _ = first_in_line(due, _blockers(db, due))
    if keep:
        db.execute(
            "UPDATE outbox SET available_at = ?, claimed_by = ?"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (now + claim_seconds, owner, json.dumps(keep)),
        )
    return load(db, keep)


def done(db: sqlite3.Connection, ids: Sequence[int]) -> None:
    db.execute(
        "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(ids)),),
    )


def release(db: sqlite3.Connection, ids: Sequence[int], available_at: float) -> None:
    db.execute(
        "UPDATE outbox SET available_at = ?, claimed_by = NULL"
        " WHERE id IN (SELECT value FROM json_each(?))",
        (available_at, json.dumps(list(ids))),
    )


def acquire_lease(
    db: sqlite3.Connection, name: str, owner: str, ttl_seconds: float, now: float
) -> bool:
    rows = _rows(
        db,
        "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
        " expires_at = excluded.expires_at"
        " WHERE leases.owner = excluded.owner OR leases.expires_at <= ?"
        " RETURNING owner",
        (name, owner, now + ttl_seconds, now),
    )
    return bool(rows)


def release_lease(db: sqlite3.Connection, name: str, owner: str) -> None:
    db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))


def load(db: sqlite3.Connection, ids: Sequence[int]) -> list[OutboxRow]:
    if not ids:
        return []
    rows = _rows(
        db,
        "SELECT o.id, o.stream, o.exchange, o.routing_key, o.body, o.message_id, o.headers,"
        f" {_EVENT_COLUMNS_E}"
        " FROM outbox o LEFT JOIN events e ON e.position = o.event_position"
        " WHERE o.id IN (SELECT value FROM json_each(?)) ORDER BY o.id",
        (json.dumps(list(ids)),),
    )
    return [_outbox_row(r) for r in rows]


def _outbox_row(r: Sequence[Any]) -> OutboxRow:
    if r[7] is not None:
        return OutboxRow(id=int(r[0]), stream=r[1], event=event_from_row(r[7:16]))
    message = OutgoingRecord(
        exchange=r[2],
        routing_key=r[3],
        body=bytes(r[4]),
        message_id=r[5],
        headers={str(k): str(v) for k, v in loads(r[6]).items()},
    )
    return OutboxRow(id=int(r[0]), stream=r[1], message=message)


def _blockers(db: sqlite3.Connection, rows: Sequence[tuple[int, str | None]]) -> dict[str, int]:
    """Per stream of ``rows``: the lowest pending outbox id that is not one of ``rows``.

    Walks the (stream, id) index from the stream's oldest pending row, so the cost
    is the rows it skips (ours), not the stream's backlog.
    """
    streams = sorted({s for _, s in rows if s is not None})
    if not streams:
        return {}
    found = _rows(
        db,
        "SELECT s.value, (SELECT id FROM outbox WHERE stream = s.value"
        " AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT 1)"
        " FROM json_each(?) AS s",
        (json.dumps([i for i, _ in rows]), json.dumps(streams)),
    )
    return {str(s): int(i) for s, i in found if i is not None}


def _rows(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return db.execute(sql, params).fetchall()
