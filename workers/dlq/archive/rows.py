"""Between a :class:`DeadLetter` and a table row: what both adapters share.

The JSON columns (headers, properties, field errors) are text in SQLite and
jsonb in PostgreSQL; both are written from the same compact JSON here. Times
come in as aware datetimes from PostgreSQL and as ISO text from SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from workers.dlq.model import (
    STATUSES,
    DeadLetter,
    DeadLetteredBy,
    DeadLetterSummary,
    FieldError,
    Query,
    ReplayRecord,
    Status,
    utc,
)

# the columns of the letters table, in insert order (body, JSON and times as they are)
LETTER_COLUMNS = (
    "id",
    "dlq",
    "queue",
    "message_key",
    "message_id",
    "message_type",
    "reason",
    "dead_lettered_by",
    "error",
    "error_type",
    "field_errors",
    "exchange",
    "routing_key",
    "attempts",
    "first_death_at",
    "last_death_at",
    "worker",
    "replica",
    "correlation_id",
    "user_id",
    "body",
    "headers",
    "properties",
    "archived_at",
    "status",
    "replay_of",
)
SUMMARY_COLUMNS = (
    "id",
    "queue",
    "reason",
    "message_type",
    "message_id",
    "attempts",
    "first_death_at",
    "last_death_at",
    "status",
    "substr(error, 1, 300) AS error",
)
FULL_COLUMNS = (*LETTER_COLUMNS, "status_at", "status_by")
REPLAY_COLUMNS = ("dead_letter_id", "replay_id", "at", "by", "exchange", "routing_key", "edited")


class Row(Protocol):
    """A database row by column name: sqlite3.Row and asyncpg.Record both are."""

    def __getitem__(self, key: str, /) -> Any: ...


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def letter_values(letter: DeadLetter, time: Any) -> tuple[Any, ...]:
    """Values for LETTER_COLUMNS; ``time`` turns a datetime into the column's type."""
    errors = [{"loc": e.loc, "msg": e.msg} for e in letter.field_errors]
    return (
        letter.id,
        letter.dlq,
        letter.queue,
        letter.message_key,
        letter.message_id,
        letter.message_type,
        letter.reason,
        letter.dead_lettered_by,
        letter.error,
        letter.error_type,
        dumps(errors),
        letter.exchange,
        letter.routing_key,
        letter.attempts,
        time(letter.first_death_at),
        time(letter.last_death_at),
        letter.worker,
        letter.replica,
        letter.correlation_id,
        letter.user_id,
        letter.body,
        dumps(letter.headers),
        dumps(letter.properties),
        time(letter.archived_at),
        letter.status,
        letter.replay_of,
    )


def to_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return utc(value)
    return utc(datetime.fromisoformat(str(value)))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _status(value: Any) -> Status:
    text = str(value)
    if text not in STATUSES:
        raise ValueError(f"unknown dead-letter status {text!r} in the archive")
    return text  # narrowed to Status by the check above


def summary_from_row(row: Row) -> DeadLetterSummary:
    return DeadLetterSummary(
        id=row["id"],
        queue=row["queue"],
        reason=row["reason"],
        message_type=row["message_type"],
        message_id=row["message_id"],
        attempts=int(row["attempts"]),
        first_death_at=to_time(row["first_death_at"]),
        last_death_at=to_time(row["last_death_at"]),
        status=_status(row["status"]),
        error=row["error"],
    )


def replay_from_row(row: Row) -> ReplayRecord:
    return ReplayRecord(
        replay_id=row["replay_id"],
        at=to_time(row["at"]),
        by=row["by"],
        exchange=row["exchange"],
        routing_key=row["routing_key"],
        edited=bool(row["edited"]),
    )


def letter_from_row(row: Row, replays: tuple[ReplayRecord, ...]) -> DeadLetter:
    errors = _json(row["field_errors"]) or []
    by: DeadLetteredBy = "rabbitmq" if row["dead_lettered_by"] == "rabbitmq" else "rallypoint"
    return DeadLetter(
        id=row["id"],
        dlq=row["dlq"],
        queue=row["queue"],
        message_key=row["message_key"],
        message_id=row["message_id"],
        message_type=row["message_type"],
        reason=row["reason"],
        dead_lettered_by=by,
        error=row["error"],
        error_type=row["error_type"],
        field_errors=tuple(FieldError(str(e["loc"]), str(e["msg"])) for e in errors),
        exchange=row["exchange"],
        routing_key=row["routing_key"],
        attempts=int(row["attempts"]),
        first_death_at=to_time(row["first_death_at"]),
        last_death_at=to_time(row["last_death_at"]),
        worker=row["worker"],
        replica=row["replica"],
        correlation_id=row["correlation_id"],
        user_id=row["user_id"],
        body=bytes(row["body"]),
        headers=_json(row["headers"]) or {},
        properties=_json(row["properties"]) or {},
        archived_at=to_time(row["archived_at"]),
        status=_status(row["status"]),
        status_at=to_time(row["status_at"]) if row["status_at"] is not None else None,
        status_by=row["status_by"],
        replay_of=row["replay_of"],
        replays=replays,
    )


def where(
    query: Query, time: Callable[[datetime], Any], mark: Callable[[int], str]
) -> tuple[str, list[Any]]:
    """The WHERE clause for ``query``; ``mark(n)`` is the n-th placeholder (? or $n)."""
    clauses: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return mark(len(params))

    if query.statuses:
        clauses.append(f"status IN ({', '.join(param(s) for s in query.statuses)})")
    if query.queue:
        clauses.append(f"queue = {param(query.queue.removesuffix('.dlq'))}")
    if query.reason:
        clauses.append(f"reason = {param(query.reason)}")
    if query.message_type:
        clauses.append(f"message_type = {param(query.message_type)}")
    if query.since is not None:
        clauses.append(f"last_death_at >= {param(time(query.since))}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def order(query: Query) -> str:
    direction = "ASC" if query.oldest_first else "DESC"
    return f" ORDER BY last_death_at {direction}, id {direction}"
