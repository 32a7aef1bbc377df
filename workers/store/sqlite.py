"""The SQLite adapter: the embedded default, one file, nothing to set up.

Concurrency: every write runs in ``BEGIN IMMEDIATE``, which takes SQLite's
single write lock up front, so concurrent writers — tasks in this process or
other processes on the same file — queue on ``busy_timeout`` instead of
failing halfway. Inside the lock the planner's version checks are exact.
In-process, one connection writes (guarded by an asyncio lock, since a
connection holds one transaction at a time) and a second one reads: WAL lets
readers run alongside the writer and see every committed append.

A path of ``:memory:`` gives a private in-memory store (for unit tests): one
connection does everything, since separate connections would see separate
databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from workers.store import sqlite_outbox
from workers.store.base import AppendOutcome, AppendRequest, Handoff, OutboxRow, RecordedEvent
from workers.store.codec import dumps, loads, result_from_dict, utc, utc_now
from workers.store.common import RelayHook, StoreBase
from workers.store.errors import StoreError, StoreUnavailable
from workers.store.handoff import handed_rows
from workers.store.ordering import split_pending
from workers.store.planner import BatchPlan, OutboxSpec, keys_of, plan_batch, streams_of
from workers.store.sqlite_conn import connect, translate
from workers.store.sqlite_schema import EVENT_COLUMNS, event_from_row, migrate

log = structlog.get_logger(__name__)


# The state one append needs: last position, last outbox id (AUTOINCREMENT's counter;
# ids are assigned explicitly under the write lock), current versions, applied keys,
# and per stream of ?3 with outbox rows pending: the newest one, and whether one is not
# claimed by the local relay ?4 (see ordering.py: this append's rows of the stream then
# go to the sweeper). Cheap whatever the backlog: max(id) is one probe of the (stream, id)
# index, and the EXISTS stops at the first row that is not the relay's own in flight.
_STATE_SQL = """
SELECT (SELECT coalesce(max(position), 0) FROM events),
       coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),
       (SELECT json_group_object(s.value, (SELECT max(version) FROM events WHERE stream = s.value))
          FROM json_each(?1) AS s),
       (SELECT json_group_object(key, json(result)) FROM processed_messages
         WHERE key IN (SELECT value FROM json_each(?2))),
       (SELECT json_group_object(s.value, json_array(
                 (SELECT max(id) FROM outbox WHERE stream = s.value),
                 EXISTS (SELECT 1 FROM outbox WHERE stream = s.value AND claimed_by IS NOT ?4)))
          FROM json_each(?3) AS s WHERE EXISTS (SELECT 1 FROM outbox WHERE stream = s.value))
"""


class SqliteEventStore(StoreBase):
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        super().__init__()
        self.path = str(path)
        self._memory = self.path == ":memory:"
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

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
            self._writer = await connect(self.path, self._busy_timeout_ms)
            found = await migrate(self._writer)
            if self._memory:
                self._reader = self._writer
            else:
                self._reader = await connect(self.path, self._busy_timeout_ms)
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

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction holding SQLite's write lock (used by sqlite_outbox too)."""
        db = self._require(self._writer)
        async with self._write_lock:
            with translate(self.path):
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    # Shielded: once COMMIT is sent it completes, cancelled caller or not.
                    await asyncio.shield(db.execute("COMMIT"))
                except BaseException:
                    # Also after a failed COMMIT, which leaves the transaction open.
                    with contextlib.suppress(sqlite3.Error):
                        await db.execute("ROLLBACK")
                    raise

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        db = self._require(self._reader)
        with translate(self.path):
            if self._memory:
                async with self._write_lock:
                    return list(await db.execute_fetchall(sql, params))
            return list(await db.execute_fetchall(sql, params))

    def _require(self, db: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if db is None:
            raise StoreError("the SQLite store is not started (call start())")
        return db

    # -- appends -------------------------------------------------------------------

    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        hook = self._relay
        streams = json.dumps(streams_of(requests))
        async with self.write() as db:
            # Everything the planner needs in one statement (each statement is a hop
            # to aiosqlite's thread, the main cost of a small append).
            ((last, seq, versions, processed, pending),) = await _rows(
                db,
                _STATE_SQL,
                (
                    streams,
                    json.dumps(keys_of(requests)),
                    streams if hook else "[]",
                    hook.owner if hook else None,
                ),
            )
            plan = plan_batch(
                requests,
                {s: int(v or 0) for s, v in json.loads(versions).items()},
                {k: result_from_dict(r) for k, r in json.loads(processed).items()},
                int(last),
            )
            # Taken before the claims' start (now): the relay's deadlines count from here.
            claimed_at = time.monotonic()
            now = utc_now()
            held, after = split_pending(json.loads(pending))
            claimed = await self._write_plan(db, plan, hook, int(seq), now, held)
        if hook is not None and claimed:
            self._notify_relay(hook, Handoff(handed_rows(plan, claimed, now), claimed_at, after))
        return plan.outcomes

    async def _write_plan(
        self,
        db: aiosqlite.Connection,
        plan: BatchPlan,
        hook: RelayHook | None,
        seq: int,
        now: datetime,
        held: set[str],
    ) -> list[tuple[int, OutboxSpec]]:
        """Insert the planned rows; return those the local relay will publish (id, spec).

        ``held``: streams with a pending outbox row not the relay's: theirs go to the sweeper.
        """
        stamp = now.isoformat(timespec="microseconds")
        if plan.events:
            await db.executemany(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.position,
                        e.stream,
                        e.version,
                        str(e.id),
                        e.type,
                        e.schema_version,
                        e.data,
                        e.metadata,
                        stamp,
                    )
                    for e in plan.events
                ],
            )
        claimed: list[tuple[int, OutboxSpec]] = []
        if plan.outbox:
            epoch = now.timestamp()
            rows = []
            for offset, spec in enumerate(plan.outbox, start=1):
                row_id = int(seq) + offset
                message = spec.message
                due = utc(message.not_before).timestamp() if message and message.not_before else 0
                if due > epoch:  # a timer: the sweeper publishes it when due
                    available, owner = due, None
                elif hook is not None and spec.stream not in held:
                    # born claimed by the local relay's fast path
                    available, owner = epoch + hook.claim_seconds, hook.owner
                    claimed.append((row_id, spec))
                else:
                    available, owner = epoch, None
                columns = sqlite_outbox.message_columns(message)
                rows.append((row_id, spec.stream, spec.event_position, *columns, available, owner))
            await db.executemany(
                "INSERT INTO outbox (id, stream, event_position, exchange, routing_key, body,"
                " message_id, headers, available_at, claimed_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        if plan.processed:
            await db.executemany(
                "INSERT INTO processed_messages (key, result, recorded_at) VALUES (?, ?, ?)",
                [(key, result, stamp) for key, result in plan.processed],
            )
        return claimed

    # -- reads ---------------------------------------------------------------------

    async def read(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        rows = await self.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream = ? AND version >= ?"
            " ORDER BY version",
            (stream, from_version),
        )
        return [event_from_row(r) for r in rows]

    async def stream_version(self, stream: str) -> int:
        ((version,),) = await self.fetch(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", (stream,)
        )
        return int(version)

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, stream_prefix: str | None = None
    ) -> list[RecordedEvent]:
        if stream_prefix:
            rows = await self.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ?"
                " AND substr(stream, 1, ?) = ? ORDER BY position LIMIT ?",
                (from_position, len(stream_prefix), stream_prefix, limit),
            )
        else:
            rows = await self.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (from_position, limit),
            )
        return [event_from_row(r) for r in rows]

    async def last_position(self) -> int:
        ((last,),) = await self.fetch("SELECT coalesce(max(position), 0) FROM events")
        return int(last)

    # -- snapshots -----------------------------------------------------------------

    async def save_snapshot(self, stream: str, version: int, state: Mapping[str, Any]) -> None:
        text = dumps(state, f"snapshot of {stream}")
        async with self.write() as db:
            # Never replace a newer snapshot with an older one (replicas race to save).
            await db.execute(
                "INSERT INTO snapshots (stream, version, state, saved_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (stream) DO UPDATE SET version = excluded.version,"
                " state = excluded.state, saved_at = excluded.saved_at"
                " WHERE excluded.version >= snapshots.version",
                (stream, version, text, utc_now().isoformat(timespec="microseconds")),
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
        async with self.write() as db:
            cursor = await db.execute(
                "DELETE FROM processed_messages WHERE recorded_at < ?", (cutoff,)
            )
            return cursor.rowcount

    # -- outbox (relay side; the SQL lives in sqlite_outbox) -----------------------------

    async def outbox_take_own(
        self, owner: str, ids: Sequence[int], claim_seconds: float
    ) -> list[OutboxRow]:
        async with self.write() as db:
            return await sqlite_outbox.take_own(db, owner, ids, claim_seconds, time.time())

    async def outbox_claim_due(
        self, owner: str, limit: int, claim_seconds: float
    ) -> list[OutboxRow]:
        # The sweeper polls this every few ms: look on the reader before taking the write lock.
        if not await self.fetch(
            "SELECT 1 FROM outbox WHERE available_at <= ? LIMIT 1", (time.time(),)
        ):
            return []
        async with self.write() as db:
            return await sqlite_outbox.claim_due(db, owner, limit, claim_seconds, time.time())

    async def outbox_done(self, ids: Sequence[int]) -> None:
        async with self.write() as db:
            await db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(ids)),),
            )

    async def outbox_release(self, ids: Sequence[int], delay_seconds: float) -> None:
        async with self.write() as db:
            await sqlite_outbox.release(db, ids, time.time() + delay_seconds)

    async def outbox_pending(self) -> int:
        ((count,),) = await self.fetch("SELECT count(*) FROM outbox")
        return int(count)

    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        async with self.write() as db:
            return await sqlite_outbox.acquire_lease(db, name, owner, ttl_seconds, time.time())

    async def release_lease(self, name: str, owner: str) -> None:
        async with self.write() as db:
            await db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))


async def _rows(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return list(await db.execute_fetchall(sql, params))
