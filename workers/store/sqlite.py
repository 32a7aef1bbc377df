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
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog

from workers.store import sqlite_outbox
from workers.store.base import AppendOutcome, AppendRequest, Handoff, OutboxRow, RecordedEvent
from workers.store.codec import dumps, loads, result_from_dict, utc, utc_now
from workers.store.common import RelayHook, StoreBase
from workers.store.errors import StoreError, StoreUnavailable
from workers.store.handoff import handed_rows, recorded_outcomes
from workers.store.ordering import split_pending
from workers.store.planner import BatchPlan, OutboxSpec, keys_of, plan_batch, streams_of
from workers.store.sqlite_conn import Connection, translate, write_transaction
from workers.store.sqlite_schema import EVENT_COLUMNS, event_from_row, migrate

log = structlog.get_logger(__name__)

T = TypeVar("T")


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
            appended = await writer.run(partial(_append, requests, hook))
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

    # -- outbox (relay side; the SQL lives in sqlite_outbox) -----------------------------
    # Each is one write transaction, one hop; times are taken inside it, under the lock.

    async def outbox_take_own(
        self, owner: str, ids: Sequence[int], claim_seconds: float
    ) -> list[OutboxRow]:
        ids = list(ids)
        return await self.write(
            lambda db: sqlite_outbox.take_own(db, owner, ids, claim_seconds, time.time())
        )

    async def outbox_claim_due(
        self, owner: str, limit: int, claim_seconds: float
    ) -> list[OutboxRow]:
        # The sweeper polls this every few ms: look on the reader before taking the write lock.
        if not await self.fetch(
            "SELECT 1 FROM outbox WHERE available_at <= ? LIMIT 1", (time.time(),)
        ):
            return []
        return await self.write(
            lambda db: sqlite_outbox.claim_due(db, owner, limit, claim_seconds, time.time())
        )

    async def outbox_done(self, ids: Sequence[int]) -> None:
        await self.write(partial(sqlite_outbox.done, ids=list(ids)))

    async def outbox_release(self, ids: Sequence[int], delay_seconds: float) -> None:
        ids = list(ids)
        await self.write(lambda db: sqlite_outbox.release(db, ids, time.time() + delay_seconds))

    async def outbox_pending(self) -> int:
        ((count,),) = await self.fetch("SELECT count(*) FROM outbox")
        return int(count)

    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return await self.write(
            lambda db: sqlite_outbox.acquire_lease(db, name, owner, ttl_seconds, time.time())
        )

    async def release_lease(self, name: str, owner: str) -> None:
        await self.write(partial(sqlite_outbox.release_lease, name=name, owner=owner))


# -- what runs on the connections' threads ----------------------------------------------


@dataclass(slots=True)
class _Written:
    """What the append transaction wrote, for what is built after its COMMIT."""

    plan: BatchPlan
    now: datetime
    claimed_at: float
    claimed: list[tuple[int, OutboxSpec]] = field(default_factory=list)
    after: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Appended:
    outcomes: list[AppendOutcome]
    handoff: Handoff | None


def _append(
    requests: Sequence[AppendRequest], hook: RelayHook | None, db: sqlite3.Connection
) -> _Appended:
    """A whole append, on the writer's thread: the transaction, then (after COMMIT, outside
    the write lock, still in the same hop) the recorded events and the relay's rows."""
    written = write_transaction(partial(_write_batch, requests, hook), db)
    handoff = None
    if hook is not None and written.claimed:
        rows = handed_rows(written.plan, written.claimed, written.now)
        handoff = Handoff(rows, written.claimed_at, written.after)
    return _Appended(recorded_outcomes(written.plan, written.now), handoff)


def _write_batch(
    requests: Sequence[AppendRequest], hook: RelayHook | None, db: sqlite3.Connection
) -> _Written:
    """Inside the write transaction: read the state, plan, insert."""
    streams = json.dumps(streams_of(requests))
    # Everything the planner needs in one statement.
    last, seq, versions, processed, pending = db.execute(
        _STATE_SQL,
        (
            streams,
            json.dumps(keys_of(requests)),
            streams if hook else "[]",
            hook.owner if hook else None,
        ),
    ).fetchone()
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
    claimed = _write_plan(db, plan, hook, int(seq), now, held)
    return _Written(plan, now, claimed_at, claimed, after)


def _write_plan(
    db: sqlite3.Connection,
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
        db.executemany(
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
        db.executemany(
            "INSERT INTO outbox (id, stream, event_position, exchange, routing_key, body,"
            " message_id, headers, available_at, claimed_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    if plan.processed:
        db.executemany(
            "INSERT INTO processed_messages (key, result, recorded_at) VALUES (?, ?, ?)",
            [(key, result, stamp) for key, result in plan.processed],
        )
    return claimed


def _execute(sql: str, params: Sequence[Any], db: sqlite3.Connection) -> int:
    """One statement; how many rows it changed."""
    return db.execute(sql, params).rowcount


def _fetch(sql: str, params: Sequence[Any], db: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return db.execute(sql, params).fetchall()


def _fetch_events(sql: str, params: Sequence[Any], db: sqlite3.Connection) -> list[RecordedEvent]:
    return [event_from_row(r) for r in db.execute(sql, params)]
