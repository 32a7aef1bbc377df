"""The SQLite adapter: the embedded default, one file, nothing to set up.

Concurrency: every write runs in ``BEGIN IMMEDIATE``, which takes SQLite's
single write lock up front, so concurrent writers — tasks in this process or
other processes on the same file — queue on ``busy_timeout`` instead of
failing halfway. Inside the lock the planner's version checks are exact.
In-process, one connection writes and a second one reads, each owned by a
thread of its own (sqlite_conn.py); WAL lets readers run alongside the writer
and see every committed append.

Speed: each write transaction — BEGIN IMMEDIATE, the state query, planning,
the inserts, COMMIT — is one synchronous function run on the writer's thread:
one hop from the event loop, not one per statement. The writer's calls run one
at a time, in order, so transactions never interleave (no asyncio lock). Each
read is one hop too, rows decoded on the reader's thread.

A path of ``:memory:`` gives a private in-memory store (for unit tests): one
connection does everything, since separate connections would see separate
databases.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog

import workers.store.sqlite_retention as retention
from workers.store.base import (
    AppendOutcome,
    AppendRequest,
    ExpireResult,
    Expiry,
    OutboxRow,
    Publishes,
    RecordedEvent,
)
from workers.store.codec import dumps, loads, utc_now
from workers.store.common import StoreBase
from workers.store.errors import StoreError, StoreUnavailable
from workers.store.sqlite_append import append
from workers.store.sqlite_conn import Connection, translate
from workers.store.sqlite_outbox import (
    acquire_lease,
    claim_due,
    release,
    release_lease,
    take_own,
)
from workers.store.sqlite_outbox import done as outbox_delete
from workers.store.sqlite_schema import EVENT_COLUMNS, event_from_row, migrate

log = structlog.get_logger(__name__)

T = TypeVar("T")


class SqliteEventStore(StoreBase):
    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = 30_000,
        publishes: Publishes | None = None,
    ) -> None:
        super().__init__(publishes)
        self.path = str(path)
        self._memory = self.path == ":memory:"
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: Connection | None = None
        self._reader: Connection | None = None

    # -- life cycle -------------------------------------------------------------

    async def start(self) -> None:
        if self._writer is not None:
            return
        if not self._memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc
        with translate(self.path):
            writer = await Connection.open(self.path, self._busy_timeout_ms, "writer")
            try:
                found = await writer.transaction(migrate)
                if self._memory:
                    reader = writer
                else:
                    reader = await Connection.open(self.path, self._busy_timeout_ms, "reader")
            except BaseException:
                with contextlib.suppress(Exception):
                    await writer.close()
                raise
        self._writer, self._reader = writer, reader
        log.info("store.started", adapter="sqlite", path=self.path, schema_from=found)

    async def close(self) -> None:
        connections = {id(c): c for c in (self._reader, self._writer) if c is not None}
        self._writer = self._reader = None
        for db in connections.values():
            await db.close()

    async def schema_version(self) -> int:
        ((version,),) = await self.fetch("SELECT version FROM schema_version")
        return int(version)

    # -- connections -------------------------------------------------------------

    async def write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """``body(db)`` in one write transaction holding SQLite's write lock: one hop."""
        writer = self._require(self._writer)
        with translate(self.path):
            return await writer.transaction(body)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement's rows, read on the reader: one hop."""
        reader = self._require(self._reader)
        with translate(self.path):
            return await reader.run(partial(_fetch, sql, params))

    async def _read_events(self, sql: str, params: Sequence[Any]) -> list[RecordedEvent]:
        reader = self._require(self._reader)
        with translate(self.path):
            return await reader.run(partial(_fetch_events, sql, params))

    def _require(self, db: Connection | None) -> Connection:
        if db is None:
            raise StoreError("the SQLite store is not started (call start())")
        return db

    # -- appends -------------------------------------------------------------------

    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        hook = self._relay
        writer = self._require(self._writer)
        with translate(self.path):
            appended = await writer.run(partial(append, requests, hook, self.publishes))
        if hook is not None and appended.handoff is not None:
            self._notify_relay(hook, appended.handoff)
        return appended.outcomes

    # -- reads ---------------------------------------------------------------------

    async def read(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        return await self._read_events(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream = ? AND version >= ?"
            " ORDER BY version",
            (stream, from_version),
        )

    async def stream_version(self, stream: str) -> int:
        ((version,),) = await self.fetch(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", (stream,)
        )
        return int(version)

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, stream_prefix: str | None = None
    ) -> list[RecordedEvent]:
        if stream_prefix:
            return await self._read_events(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ?"
                " AND substr(stream, 1, ?) = ? ORDER BY position LIMIT ?",
                (from_position, len(stream_prefix), stream_prefix, limit),
            )
        return await self._read_events(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (from_position, limit),
        )

    async def last_position(self) -> int:
        ((last,),) = await self.fetch("SELECT coalesce(max(position), 0) FROM events")
        return int(last)

    # -- snapshots -----------------------------------------------------------------

    async def save_snapshot(self, stream: str, version: int, state: Mapping[str, Any]) -> None:
        text = dumps(state, f"snapshot of {stream}")
        saved_at = utc_now().isoformat(timespec="microseconds")
        # Never replace a newer snapshot with an older one (replicas race to save).
        await self.write(
            partial(
                _execute,
                "INSERT INTO snapshots (stream, version, state, saved_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (stream) DO UPDATE SET version = excluded.version,"
                " state = excluded.state, saved_at = excluded.saved_at"
                " WHERE excluded.version >= snapshots.version",
                (stream, version, text, saved_at),
            )
        )

    async def load_snapshot(self, stream: str) -> tuple[int, dict[str, Any]] | None:
        rows = await self.fetch("SELECT version, state FROM snapshots WHERE stream = ?", (stream,))
        if not rows:
            return None
        return int(rows[0][0]), loads(rows[0][1])

    async def prune_processed(self, older_than: timedelta) -> int:
        """Forget idempotency keys applied more than ``older_than`` ago; how many.

        After this a redelivery of such a message would apply again: keep the window
        far longer than any message can sit in a queue (days, not minutes).
        """
        cutoff = (utc_now() - older_than).isoformat(timespec="microseconds")
        return await self.write(
            partial(_execute, "DELETE FROM processed_messages WHERE recorded_at < ?", (cutoff,))
        )

    # -- retention (the SQL lives in sqlite_retention) -------------------------------------

    async def expire(self, groups: Sequence[Expiry]) -> ExpireResult:
        """Delete each group's streams, their timers, snapshots and processed keys, in one
        write transaction; a group whose streams moved on, are not yet published or hold
        the newest event stays (see workers/store/expiry.py)."""
        if not groups:
            return ExpireResult((), {})
        return await self.write(partial(retention.expire, list(groups)))

    async def import_events(self, events: Sequence[RecordedEvent]) -> tuple[int, int]:
        """Append archived events at new positions (stream, version, id, type, data,
        metadata and recorded_at kept), in one transaction, with no outbox rows: history
        coming back is not news. An id already here is skipped. (imported, skipped)."""
        return await self.write(partial(retention.import_rows, list(events)))

    async def reclaim_space(self, *, full: bool = False) -> int:
        """Hand freed pages back to the file system (see sqlite_retention); pages freed."""
        writer = self._require(self._writer)
        with translate(self.path):
            return await writer.run(partial(retention.reclaim, full))

    async def store_size(self) -> dict[str, int]:
        return await self._require(self._reader).run(retention.size)

    async def mark_expired(self, table: str, task_ids: Sequence[str]) -> int | None:
        if not task_ids:
            return 0
        return await self.write(partial(retention.mark_expired, table, list(task_ids)))

    async def min_position(self, table: str) -> int | None:
        return await self._require(self._reader).run(partial(retention.min_position, table))

    # -- outbox (relay side; the SQL lives in sqlite_outbox) -----------------------------
    # Each is one write transaction, one hop; times are taken inside it, under the lock.

    async def outbox_take_own(
        self, owner: str, ids: Sequence[int], claim_seconds: float
    ) -> list[OutboxRow]:
        ids = list(ids)
        return await self.write(lambda db: take_own(db, owner, ids, claim_seconds, time.time()))

    async def outbox_claim_due(
        self, owner: str, limit: int, claim_seconds: float
    ) -> list[OutboxRow]:
        # The sweeper polls this every few ms: look on the reader before taking the write lock.
        if not await self.fetch(
            "SELECT 1 FROM outbox WHERE available_at <= ? LIMIT 1", (time.time(),)
        ):
            return []
        return await self.write(lambda db: claim_due(db, owner, limit, claim_seconds, time.time()))

    async def outbox_done(self, ids: Sequence[int]) -> None:
        await self.write(partial(outbox_delete, ids=list(ids)))

    async def outbox_release(self, ids: Sequence[int], delay_seconds: float) -> None:
        ids = list(ids)
        await self.write(lambda db: release(db, ids, time.time() + delay_seconds))

    async def outbox_pending(self) -> int:
        ((count,),) = await self.fetch("SELECT count(*) FROM outbox")
        return int(count)

    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return await self.write(lambda db: acquire_lease(db, name, owner, ttl_seconds, time.time()))

    async def release_lease(self, name: str, owner: str) -> None:
        await self.write(partial(release_lease, name=name, owner=owner))


# -- what runs on the connections' threads ----------------------------------------------


def _execute(sql: str, params: Sequence[Any], db: sqlite3.Connection) -> int:
    """One statement; how many rows it changed."""
    return db.execute(sql, params).rowcount


def _fetch(sql: str, params: Sequence[Any], db: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return db.execute(sql, params).fetchall()


def _fetch_events(sql: str, params: Sequence[Any], db: sqlite3.Connection) -> list[RecordedEvent]:
    return [event_from_row(r) for r in db.execute(sql, params)]
