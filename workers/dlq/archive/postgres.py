"""The PostgreSQL archive: the same tables as SQLite's, in the database of the event store.

Migrations run under a transaction-scoped advisory lock, so replicas starting
at once apply each once. Ids are ``COLLATE "C"`` so an id prefix is a range
scan on the primary key.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from workers.dlq.archive.base import AmbiguousId, ArchiveError, ArchiveUnavailable, NotFound
from workers.dlq.archive.rows import (
    FULL_COLUMNS,
    LETTER_COLUMNS,
    REPLAY_COLUMNS,
    SUMMARY_COLUMNS,
    letter_from_row,
    letter_values,
    order,
    replay_from_row,
    summary_from_row,
    where,
)
from workers.dlq.model import DeadLetter, DeadLetterSummary, Query, ReplayRecord, Status, utc

log = structlog.get_logger(__name__)

_MIGRATION_LOCK = 0x646C7131  # "dlq1": the advisory lock id for migrations

MIGRATIONS: list[list[str]] = [
    [
        """
        CREATE TABLE dlq_letters (
            id               TEXT COLLATE "C" PRIMARY KEY,
            dlq              TEXT NOT NULL,
            queue            TEXT NOT NULL,
            message_key      TEXT NOT NULL,
            message_id       TEXT,
            message_type     TEXT,
            reason           TEXT NOT NULL,
            dead_lettered_by TEXT NOT NULL,
            error            TEXT,
            error_type       TEXT,
            field_errors     JSONB NOT NULL,
            exchange         TEXT,
            routing_key      TEXT,
            attempts         INTEGER NOT NULL,
            first_death_at   TIMESTAMPTZ NOT NULL,
            last_death_at    TIMESTAMPTZ NOT NULL,
            worker           TEXT,
            replica          TEXT,
            correlation_id   TEXT,
            user_id          TEXT,
            body             BYTEA NOT NULL,
            headers          JSONB NOT NULL,
            properties       JSONB NOT NULL,
            archived_at      TIMESTAMPTZ NOT NULL,
            status           TEXT NOT NULL,
            replay_of        TEXT,
            status_at        TIMESTAMPTZ,
            status_by        TEXT,
            claim_id         TEXT,
            claimed_at       TIMESTAMPTZ
        )
        """,
        "CREATE UNIQUE INDEX dlq_letters_key ON dlq_letters (dlq, message_key, last_death_at)",
        "CREATE INDEX dlq_letters_status_time ON dlq_letters (status, last_death_at)",
        "CREATE INDEX dlq_letters_queue ON dlq_letters (status, queue, last_death_at)",
        "CREATE INDEX dlq_letters_reason ON dlq_letters (status, reason, last_death_at)",
        "CREATE INDEX dlq_letters_type ON dlq_letters (status, message_type, last_death_at)",
        """
        CREATE TABLE dlq_replays (
            dead_letter_id TEXT NOT NULL,
            replay_id      TEXT NOT NULL,
            at             TIMESTAMPTZ NOT NULL,
            by             TEXT NOT NULL,
            exchange       TEXT NOT NULL,
            routing_key    TEXT NOT NULL,
            edited         BOOLEAN NOT NULL,
            PRIMARY KEY (dead_letter_id, replay_id)
        )
        """,
    ],
]


def _time(moment: datetime) -> datetime:
    return utc(moment)


def _mark(n: int) -> str:
    return f"${n}"


@contextlib.contextmanager
def _translate(url: str) -> Iterator[None]:
    try:
        yield
    except (OSError, asyncpg.exceptions.CannotConnectNowError) as exc:
        raise ArchiveUnavailable(f"dead-letter archive: cannot reach PostgreSQL: {exc}") from exc
    except asyncpg.exceptions.InterfaceError as exc:
        raise ArchiveUnavailable(f"dead-letter archive: {exc}") from exc
    except asyncpg.exceptions.PostgresError as exc:
        raise ArchiveError(f"dead-letter archive: {exc}") from exc


class PostgresArchive:
    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4) -> None:
        self.url, self._schema = _split_schema(url)
        self._sizes = (min_size, max_size)
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self._pool is not None:
            return
        with _translate(self.url):
            settings = {"search_path": self._schema} if self._schema else None
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                server_settings=settings,
            )
            async with self._pool.acquire() as db, db.transaction():
                await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                if self._schema:
                    await db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
                await _migrate(db)
        log.debug("dlq.archive.started", adapter="postgres")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ArchiveError("the PostgreSQL archive is not started (call start())")
        return self._pool

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        with _translate(self.url):
            return list(await self.pool.fetch(sql, *params))

    # ---- writes ----
    async def add(self, letters: Sequence[DeadLetter]) -> int:
        if not letters:
            return 0
        columns = ", ".join(LETTER_COLUMNS)
        marks = ", ".join(_mark(i + 1) for i in range(len(LETTER_COLUMNS)))
        ids = list({x.id for x in letters})
        with _translate(self.url):
            async with self.pool.acquire() as db, db.transaction():
                known = await db.fetchval(
                    "SELECT count(*) FROM dlq_letters WHERE id = ANY($1::text[])", ids
                )
                await db.executemany(
                    f"INSERT INTO dlq_letters ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                    [letter_values(x, _time) for x in letters],
                )
        return len(ids) - int(known)

    async def claim(
        self, ids: Sequence[str], claim_id: str, *, now: datetime, stale_before: datetime
    ) -> list[str]:
        rows = await self._fetch(
            "UPDATE dlq_letters SET claim_id = $1, claimed_at = $2 WHERE id = ANY($3::text[]) "
            "AND status = 'dead' AND (claim_id IS NULL OR claimed_at < $4) RETURNING id",
            claim_id,
            utc(now),
            list(dict.fromkeys(ids)),
            utc(stale_before),
        )
        taken = {r["id"] for r in rows}
        return [i for i in dict.fromkeys(ids) if i in taken]

    async def release(self, ids: Sequence[str], claim_id: str) -> None:
        await self._fetch(
            "UPDATE dlq_letters SET claim_id = NULL, claimed_at = NULL "
            "WHERE id = ANY($1::text[]) AND claim_id = $2",
            list(ids),
            claim_id,
        )

    async def mark_replayed(self, id: str, claim_id: str, record: ReplayRecord) -> bool:
        with _translate(self.url):
            async with self.pool.acquire() as db, db.transaction():
                status = await db.execute(
                    "UPDATE dlq_letters SET status = 'replayed', status_at = $1, status_by = $2, "
                    "claim_id = NULL, claimed_at = NULL WHERE id = $3 AND claim_id = $4",
                    utc(record.at),
                    record.by,
                    id,
                    claim_id,
                )
                if status.endswith(" 0"):
                    return False
                await db.execute(
                    f"INSERT INTO dlq_replays ({', '.join(REPLAY_COLUMNS)}) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    id,
                    record.replay_id,
                    utc(record.at),
                    record.by,
                    record.exchange,
                    record.routing_key,
                    record.edited,
                )
        return True

    async def mark_purged(self, ids: Sequence[str], *, by: str, at: datetime) -> list[str]:
        rows = await self._fetch(
            "UPDATE dlq_letters SET status = 'purged', status_at = $1, status_by = $2 "
            "WHERE id = ANY($3::text[]) AND status = 'dead' AND claim_id IS NULL RETURNING id",
            utc(at),
            by,
            list(dict.fromkeys(ids)),
        )
        changed = {r["id"] for r in rows}
        return [i for i in dict.fromkeys(ids) if i in changed]

    # ---- reads ----
    async def get(self, id_or_prefix: str) -> DeadLetter:
        prefix = id_or_prefix.strip().lower()
        if not prefix:
            raise NotFound("no dead letter has an empty id")
        rows = await self._fetch(
            "SELECT id FROM dlq_letters WHERE id >= $1 AND id <= $2 ORDER BY id LIMIT 2",
            prefix,
            prefix + "~",
        )
        if not rows:
            raise NotFound(f"no dead letter has the id {id_or_prefix!r}")
        exact = [r["id"] for r in rows if r["id"] == prefix]
        if len(rows) > 1 and not exact:
            raise AmbiguousId(f"{id_or_prefix!r} is the start of several ids; give more of it")
        (letter,) = await self.load([exact[0] if exact else rows[0]["id"]])
        return letter

    async def load(self, ids: Sequence[str]) -> list[DeadLetter]:
        rows = await self._fetch(
            f"SELECT {', '.join(FULL_COLUMNS)} FROM dlq_letters WHERE id = ANY($1::text[]) "
            "ORDER BY last_death_at, id",
            list(dict.fromkeys(ids)),
        )
        return await self._with_replays(rows)

    async def _with_replays(self, rows: Sequence[asyncpg.Record]) -> list[DeadLetter]:
        replayed = [r["id"] for r in rows if r["status"] == "replayed"]
        replays: dict[str, list[ReplayRecord]] = {}
        if replayed:
            for r in await self._fetch(
                f"SELECT {', '.join(REPLAY_COLUMNS)} FROM dlq_replays "
                "WHERE dead_letter_id = ANY($1::text[]) ORDER BY at",
                replayed,
            ):
                replays.setdefault(r["dead_letter_id"], []).append(replay_from_row(r))
        return [letter_from_row(r, tuple(replays.get(r["id"], ()))) for r in rows]

    async def find(self, query: Query) -> list[DeadLetterSummary]:
        clause, params = where(query, _time, _mark)
        limit = f" LIMIT {int(query.limit)}" if query.limit else ""
        rows = await self._fetch(
            f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM dlq_letters{clause}{order(query)}{limit}",
            *params,
        )
        return [summary_from_row(r) for r in rows]

    async def scan(self, query: Query, *, batch: int = 500) -> AsyncIterator[DeadLetter]:
        clause, params = where(query, _time, _mark)
        after: tuple[datetime, str] | None = None
        while True:
            page_clause, page_params = clause, list(params)
            if after is not None:
                joiner = " AND " if clause else " WHERE "
                n = len(page_params)
                page_clause += f"{joiner}(last_death_at, id) > (${n + 1}, ${n + 2})"
                page_params += list(after)
            rows = await self._fetch(
                f"SELECT {', '.join(FULL_COLUMNS)} FROM dlq_letters{page_clause} "
                f"ORDER BY last_death_at, id LIMIT {int(batch)}",
                *page_params,
            )
            for letter in await self._with_replays(rows):
                yield letter
            if len(rows) < batch:
                return
            after = (rows[-1]["last_death_at"], rows[-1]["id"])

    async def counts(self, statuses: Sequence[Status] = ("dead",)) -> dict[tuple[str, str], int]:
        clause, params = where(Query(statuses=tuple(statuses)), _time, _mark)
        rows = await self._fetch(
            f"SELECT queue, reason, count(*) AS n FROM dlq_letters{clause} GROUP BY queue, reason",
            *params,
        )
        return {(r["queue"], r["reason"]): int(r["n"]) for r in rows}

    async def queues(self) -> list[str]:
        rows = await self._fetch("SELECT DISTINCT dlq FROM dlq_letters ORDER BY dlq")
        return [r["dlq"] for r in rows]


def _split_schema(url: str) -> tuple[str, str | None]:
    """Take the event store's ``?schema=NAME`` off the URL (asyncpg would send it to the
    server as a setting); the archive's tables go in that schema too."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in params if k == "schema"), None)
    if schema is not None and not schema.replace("_", "").isalnum():
        raise ArchiveError(f"schema name {schema!r}: letters, digits and _ only")
    rest = urlencode([(k, v) for k, v in params if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema or None


async def _migrate(db: PoolConnectionProxy[asyncpg.Record]) -> None:
    await db.execute("CREATE TABLE IF NOT EXISTS dlq_schema_version (version INTEGER NOT NULL)")
    found = await db.fetchval("SELECT version FROM dlq_schema_version")
    if found is None:
        await db.execute("INSERT INTO dlq_schema_version (version) VALUES (0)")
        found = 0
    for statements in MIGRATIONS[int(found) :]:
        for statement in statements:
            await db.execute(statement)
    if int(found) < len(MIGRATIONS):
        await db.execute("UPDATE dlq_schema_version SET version = $1", len(MIGRATIONS))
