"""The SQLite archive: by default the event store's own file, in tables of its own (``dlq_*``).

Sharing the file keeps one thing to back up; the tables and their schema
version (``dlq_schema_version``) are separate from the store's, so neither
migrates the other. Writes take the write lock up front (BEGIN IMMEDIATE) and
wait on ``busy_timeout`` while the event store writes. Times are ISO 8601 UTC
text with microseconds: fixed width, so text order is time order.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

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
from workers.dlq.model import (
    DeadLetter,
    DeadLetterSummary,
    Query,
    ReplayRecord,
    Status,
    utc,
)

log = structlog.get_logger(__name__)

MIGRATIONS: list[list[str]] = [
    [
        """
        CREATE TABLE dlq_letters (
            id               TEXT PRIMARY KEY,
            dlq              TEXT NOT NULL,
            queue            TEXT NOT NULL,
            message_key      TEXT NOT NULL,
            message_id       TEXT,
            message_type     TEXT,
            reason           TEXT NOT NULL,
            dead_lettered_by TEXT NOT NULL,
            error            TEXT,
            error_type       TEXT,
            field_errors     TEXT NOT NULL,
            exchange         TEXT,
            routing_key      TEXT,
            attempts         INTEGER NOT NULL,
            first_death_at   TEXT NOT NULL,
            last_death_at    TEXT NOT NULL,
            worker           TEXT,
            replica          TEXT,
            correlation_id   TEXT,
            user_id          TEXT,
            body             BLOB NOT NULL,
            headers          TEXT NOT NULL,
            properties       TEXT NOT NULL,
            archived_at      TEXT NOT NULL,
            status           TEXT NOT NULL,
            replay_of        TEXT,
            status_at        TEXT,
            status_by        TEXT,
            claim_id         TEXT,
            claimed_at       TEXT
        )
        """,
        # the dedupe key: a crash between commit and ack brings the same death back
        "CREATE UNIQUE INDEX dlq_letters_key ON dlq_letters (dlq, message_key, last_death_at)",
        # `rally dlq list` and its filters: newest first within a status
        "CREATE INDEX dlq_letters_status_time ON dlq_letters (status, last_death_at)",
        "CREATE INDEX dlq_letters_queue ON dlq_letters (status, queue, last_death_at)",
        "CREATE INDEX dlq_letters_reason ON dlq_letters (status, reason, last_death_at)",
        "CREATE INDEX dlq_letters_type ON dlq_letters (status, message_type, last_death_at)",
        """
        CREATE TABLE dlq_replays (
            dead_letter_id TEXT NOT NULL,
            replay_id      TEXT NOT NULL,
            at             TEXT NOT NULL,
            by             TEXT NOT NULL,
            exchange       TEXT NOT NULL,
            routing_key    TEXT NOT NULL,
            edited         INTEGER NOT NULL,
            PRIMARY KEY (dead_letter_id, replay_id)
        ) WITHOUT ROWID
        """,
    ],
]


def _time(moment: datetime) -> str:
    return utc(moment).isoformat(timespec="microseconds")


def _mark(_: int) -> str:
    return "?"


@contextlib.contextmanager
def _translate(path: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise ArchiveUnavailable(f"dead-letter archive {path}: {exc}") from exc
    except (sqlite3.Error, ValueError) as exc:
        raise ArchiveError(f"dead-letter archive {path}: {exc}") from exc


class SqliteArchive:
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        # one connection: aiosqlite runs its statements one at a time on its thread anyway,
        # and a transaction must not interleave with another task's statements
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with _translate(self.path):
            db = await aiosqlite.connect(self.path, isolation_level=None)
            db.row_factory = sqlite3.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            self._db = db
            async with self._write() as tx:
                await _migrate(tx)
        log.debug("dlq.archive.started", adapter="sqlite", path=self.path)

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._db is None:
            raise ArchiveError("the SQLite archive is not started (call start())")
        db = self._db
        async with self._lock:
            with _translate(self.path):
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        await db.execute("ROLLBACK")
                    raise
                # once COMMIT is sent it completes, cancelled caller or not
                await asyncio.shield(db.execute("COMMIT"))

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        if self._db is None:
            raise ArchiveError("the SQLite archive is not started (call start())")
        async with self._lock:
            with _translate(self.path):
                return list(await self._db.execute_fetchall(sql, params))

    # ---- writes ----
    async def add(self, letters: Sequence[DeadLetter]) -> int:
        if not letters:
            return 0
        columns = ", ".join(LETTER_COLUMNS)
        marks = ", ".join("?" for _ in LETTER_COLUMNS)
        sql = f"INSERT OR IGNORE INTO dlq_letters ({columns}) VALUES ({marks})"
        async with self._write() as db:
            before = db.total_changes
            await db.executemany(sql, [letter_values(x, _time) for x in letters])
            return db.total_changes - before

    async def claim(
        self, ids: Sequence[str], claim_id: str, *, now: datetime, stale_before: datetime
    ) -> list[str]:
        taken: list[str] = []
        async with self._write() as db:
            for id_ in dict.fromkeys(ids):
                cursor = await db.execute(
                    "UPDATE dlq_letters SET claim_id = ?, claimed_at = ? WHERE id = ? AND "
                    "status = 'dead' AND (claim_id IS NULL OR claimed_at < ?)",
                    (claim_id, _time(now), id_, _time(stale_before)),
                )
                if cursor.rowcount:
                    taken.append(id_)
        return taken

    async def release(self, ids: Sequence[str], claim_id: str) -> None:
        async with self._write() as db:
            await db.executemany(
                "UPDATE dlq_letters SET claim_id = NULL, claimed_at = NULL "
                "WHERE id = ? AND claim_id = ?",
                [(id_, claim_id) for id_ in ids],
            )

    async def mark_replayed(self, id: str, claim_id: str, record: ReplayRecord) -> bool:
        async with self._write() as db:
            cursor = await db.execute(
                "UPDATE dlq_letters SET status = 'replayed', status_at = ?, status_by = ?, "
                "claim_id = NULL, claimed_at = NULL WHERE id = ? AND claim_id = ?",
                (_time(record.at), record.by, id, claim_id),
            )
            if not cursor.rowcount:
                return False
            await db.execute(
                f"INSERT INTO dlq_replays ({', '.join(REPLAY_COLUMNS)}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    id,
                    record.replay_id,
                    _time(record.at),
                    record.by,
                    record.exchange,
                    record.routing_key,
                    int(record.edited),
                ),
            )
            return True

    async def mark_purged(self, ids: Sequence[str], *, by: str, at: datetime) -> list[str]:
        changed: list[str] = []
        async with self._write() as db:
            for id_ in dict.fromkeys(ids):
                cursor = await db.execute(
                    "UPDATE dlq_letters SET status = 'purged', status_at = ?, status_by = ? "
                    "WHERE id = ? AND status = 'dead' AND claim_id IS NULL",
                    (_time(at), by, id_),
                )
                if cursor.rowcount:
                    changed.append(id_)
        return changed

    # ---- reads ----
    async def get(self, id_or_prefix: str) -> DeadLetter:
        prefix = id_or_prefix.strip().lower()
        if not prefix:
            raise NotFound("no dead letter has an empty id")
        rows = await self._fetch(
            "SELECT id FROM dlq_letters WHERE id >= ? AND id <= ? ORDER BY id LIMIT 2",
            (prefix, prefix + "~"),
        )
        if not rows:
            raise NotFound(f"no dead letter has the id {id_or_prefix!r}")
        exact = [r["id"] for r in rows if r["id"] == prefix]
        if len(rows) > 1 and not exact:
            raise AmbiguousId(f"{id_or_prefix!r} is the start of several ids; give more of it")
        (letter,) = await self.load([exact[0] if exact else rows[0]["id"]])
        return letter

    async def load(self, ids: Sequence[str]) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):  # SQLite's limit on bound parameters
            chunk = unique[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = await self._fetch(
                f"SELECT {', '.join(FULL_COLUMNS)} FROM dlq_letters WHERE id IN ({marks})", chunk
            )
            out += await self._with_replays(rows)
        return sorted(out, key=lambda x: (x.last_death_at, x.id))

    async def _with_replays(self, rows: Sequence[sqlite3.Row]) -> list[DeadLetter]:
        replayed = [r["id"] for r in rows if r["status"] == "replayed"]
        replays: dict[str, list[ReplayRecord]] = {}
        if replayed:
            marks = ", ".join("?" for _ in replayed)
            for r in await self._fetch(
                f"SELECT {', '.join(REPLAY_COLUMNS)} FROM dlq_replays "
                f"WHERE dead_letter_id IN ({marks}) ORDER BY at",
                replayed,
            ):
                replays.setdefault(r["dead_letter_id"], []).append(replay_from_row(r))
        return [letter_from_row(r, tuple(replays.get(r["id"], ()))) for r in rows]

    async def find(self, query: Query) -> list[DeadLetterSummary]:
        clause, params = where(query, _time, _mark)
        limit = f" LIMIT {int(query.limit)}" if query.limit else ""
        rows = await self._fetch(
            f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM dlq_letters{clause}{order(query)}{limit}",
            params,
        )
        return [summary_from_row(r) for r in rows]

    async def scan(self, query: Query, *, batch: int = 500) -> AsyncIterator[DeadLetter]:
        # keyset pagination on (last_death_at, id): stable while letters keep arriving
        clause, params = where(query, _time, _mark)
        after: tuple[str, str] | None = None
        while True:
            page_clause, page_params = clause, list(params)
            if after is not None:
                joiner = " AND " if clause else " WHERE "
                page_clause += f"{joiner}(last_death_at, id) > (?, ?)"
                page_params += list(after)
            rows = await self._fetch(
                f"SELECT {', '.join(FULL_COLUMNS)} FROM dlq_letters{page_clause} "
                f"ORDER BY last_death_at, id LIMIT {int(batch)}",
                page_params,
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
            params,
        )
        return {(r["queue"], r["reason"]): int(r["n"]) for r in rows}

    async def queues(self) -> list[str]:
        rows = await self._fetch("SELECT DISTINCT dlq FROM dlq_letters ORDER BY dlq")
        return [r["dlq"] for r in rows]


async def _migrate(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE IF NOT EXISTS dlq_schema_version (version INTEGER NOT NULL)")
    rows = list(await db.execute_fetchall("SELECT version FROM dlq_schema_version"))
    found = int(rows[0][0]) if rows else 0
    if not rows:
        await db.execute("INSERT INTO dlq_schema_version (version) VALUES (0)")
    for statements in MIGRATIONS[found:]:
        for statement in statements:
            await db.execute(statement)
    if found < len(MIGRATIONS):
        await db.execute("UPDATE dlq_schema_version SET version = ?", (len(MIGRATIONS),))
