"""The PostgreSQL adapter: for fleets whose workers run on several machines.

Appends are serialized by ``pg_advisory_xact_lock`` taken first in every
append transaction. That one lock buys three things:

- the planner's version and idempotency checks are exact (no one else can
  append between the read and the commit), so there are no serialization
  failures to retry;
- positions (and outbox ids) are assigned under the lock and therefore become
  visible in commit order: a subscriber or relay reading ``position > cursor``
  never skips a lower position that commits late;
- positions have no gaps.

The cost is one writer at a time; batching (``append_many``, the group
committer) keeps throughput high, and each append is four round trips:
BEGIN with the lock, one read of the current state, one write of every row
(postgres_rows.py), COMMIT.

``?schema=NAME`` in the URL keeps the store in its own schema (created if
missing); anything else in the query goes to asyncpg as usual.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

import workers.store.postgres_retention as retention
from workers.store.base import (
    AppendOutcome,
    AppendRequest,
    ExpireResult,
    Expiry,
    Handoff,
    OutboxRow,
    Publishes,
    RecordedEvent,
)
from workers.store.codec import dumps, loads, result_from_dict
from workers.store.common import StoreBase
from workers.store.errors import StoreError
from workers.store.handoff import handed_rows, recorded_outcomes
from workers.store.ordering import split_pending
from workers.store.planner import keys_of, plan_batch, streams_of
from workers.store.postgres_conn import append_transaction, keep_session, translate
from workers.store.postgres_outbox import acquire_lease, claim_due, release, take_own
from workers.store.postgres_rows import WRITE_SQL, events_json, outbox_json, processed_json
from workers.store.postgres_schema import (
    EVENT_COLUMNS,
    Conn,
    append_lock_key,
    event_from_record,
    migrate,
)

log = structlog.get_logger(__name__)

# The state one append needs, in one round trip. The outbox ids are reserved here as a
# block (upper bound: every event and message of the batch), under the append lock.
# ``pending``: per stream of $4 with outbox rows pending, the newest one and whether one
# is not claimed by the local relay $5 (see ordering.py: this append's rows of the stream
# then go to the sweeper). Exact under the append lock, since only appends insert outbox
# rows; a row deleted or released meanwhile only sends ours the slow way. Cheap whatever
# the backlog: max(id) is one probe of the (stream, id) index, and the EXISTS stops at the
# first row that is not the relay's own in flight.
_STATE_SQL = """
SELECT (SELECT coalesce(max(position), 0) FROM events) AS last,
       clock_timestamp() AS now,
       ARRAY(SELECT coalesce((SELECT max(e.version) FROM events e WHERE e.stream = s.stream), 0)
             FROM unnest($1::text[]) WITH ORDINALITY AS s(stream, n) ORDER BY s.n) AS versions,
       (SELECT coalesce(json_object_agg(key, result), '{}'::json)
          FROM processed_messages WHERE key = ANY($2::text[]))::text AS processed,
       setval('outbox_id_seq', nextval('outbox_id_seq') + $3::bigint - 1) AS outbox_last,
       (SELECT coalesce(json_object_agg(p.s, json_build_array(p.newest, p.theirs)), '{}'::json)
          FROM (SELECT s, (SELECT max(o.id) FROM outbox o WHERE o.stream = s) AS newest,
                       EXISTS (SELECT 1 FROM outbox o WHERE o.stream = s
                                AND o.claimed_by IS DISTINCT FROM $5::text) AS theirs
                  FROM unnest($4::text[]) AS s) AS p
         WHERE p.newest IS NOT NULL)::text AS pending
"""


def split_schema(url: str) -> tuple[str, str | None]:
    """Take our ``schema`` parameter out of the URL (asyncpg would pass it to the server)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema or None


class PostgresEventStore(StoreBase):
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        publishes: Publishes | None = None,
    ) -> None:
        super().__init__(publishes)
        self._dsn, self.schema = split_schema(url)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._lock_key = 0

    async def start(self) -> None:
        if self._pool is not None:
            return
        settings = {"search_path": self.schema} if self.schema else None
        with translate():
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=settings,
                reset=keep_session,
            )
            try:
                async with pool.acquire() as conn:
                    found = await migrate(conn, self.schema)
                    schema = await conn.fetchval("SELECT current_schema()")
            except BaseException:
                await pool.close()
                raise
        self._pool = pool
        self._lock_key = append_lock_key(str(schema))
        log.info("store.started", adapter="postgres", schema=schema, schema_from=found)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def schema_version(self) -> int:
        async with self.connection() as conn:
            return int(await conn.fetchval("SELECT version FROM schema_version"))

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not started (call start())")
        with translate():
            async with self._pool.acquire() as conn:
                try:
                    yield conn
                except (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError):
                    # its state is unknown (the pool's reset checks nothing): never reuse it
                    with contextlib.suppress(Exception):
                        conn.terminate()
                    raise

    # -- appends -------------------------------------------------------------------

    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        hook = self._relay
        streams = streams_of(requests)
        reserve = max(1, sum(len(a.events) for r in requests for a in r.appends))
        reserve += sum(len(r.outbox) for r in requests)
        async with self.connection() as conn, append_transaction(conn, self._lock_key):
            # Taken before the claims' start (the database's now): the relay's deadlines
            # count from here.
            claimed_at = time.monotonic()
            state = await conn.fetchrow(
                _STATE_SQL,
                streams,
                keys_of(requests),
                reserve,
                streams if hook else [],
                hook.owner if hook else None,
            )
            assert state is not None
            processed = {k: result_from_dict(v) for k, v in loads(state[3]).items()}
            plan = plan_batch(
                requests,
                dict(zip(streams, state[2], strict=True)),
                processed,
                int(state[0]),
                self.publishes,
            )
            now = state[1]
            first_id = int(state[4]) - reserve + 1
            held, after = split_pending(loads(state[5]))
            outbox, claimed = outbox_json(plan, first_id, now, hook, held)
            cancelled: list[int] = []
            if plan.events or plan.outbox or plan.processed or plan.cancel:
                cancelled = await conn.fetchval(
                    WRITE_SQL,
                    events_json(plan.events),
                    outbox,
                    processed_json(plan),
                    now,
                    sorted(plan.cancel),
                )
        # Built after COMMIT, outside the append lock. ``now`` is the recorded_at stored.
        if hook is not None and (claimed or cancelled):
            rows = handed_rows(plan, [(i, plan.outbox[i - first_id]) for i in claimed], now)
            self._notify_relay(hook, Handoff(rows, claimed_at, after, cancelled))
        return recorded_outcomes(plan, now)

    # -- reads ---------------------------------------------------------------------

    async def read(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE stream = $1 AND version >= $2"
                " ORDER BY version",
                stream,
                from_version,
            )
        return [event_from_record(r) for r in rows]

    async def stream_version(self, stream: str) -> int:
        async with self.connection() as conn:
            version = await conn.fetchval(
                "SELECT coalesce(max(version), 0) FROM events WHERE stream = $1", stream
            )
        return int(version)

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, stream_prefix: str | None = None
    ) -> list[RecordedEvent]:
        async with self.connection() as conn:
            if stream_prefix:
                rows = await conn.fetch(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1"
                    " AND starts_with(stream, $3) ORDER BY position LIMIT $2",
                    from_position,
                    limit,
                    stream_prefix,
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1"
                    " ORDER BY position LIMIT $2",
                    from_position,
                    limit,
                )
        return [event_from_record(r) for r in rows]

    async def last_position(self) -> int:
        async with self.connection() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))

    # -- snapshots -----------------------------------------------------------------

    async def save_snapshot(self, stream: str, version: int, state: Mapping[str, Any]) -> None:
        text = dumps(state, f"snapshot of {stream}")
        async with self.connection() as conn:
            # Never replace a newer snapshot with an older one (replicas race to save).
            await conn.execute(
                "INSERT INTO snapshots (stream, version, state, saved_at)"
                " VALUES ($1, $2, $3::jsonb, clock_timestamp())"
                " ON CONFLICT (stream) DO UPDATE SET version = excluded.version,"
                " state = excluded.state, saved_at = excluded.saved_at"
                " WHERE excluded.version >= snapshots.version",
                stream,
                version,
                text,
            )

    async def load_snapshot(self, stream: str) -> tuple[int, dict[str, Any]] | None:
        async with self.connection() as conn:
            row = await conn.fetchrow(
                "SELECT version, state FROM snapshots WHERE stream = $1", stream
            )
        return None if row is None else (int(row[0]), loads(row[1]))

    async def prune_processed(self, older_than: timedelta) -> int:
        """Forget idempotency keys applied more than ``older_than`` ago; how many.

        After this a redelivery of such a message would apply again: keep the window
        far longer than any message can sit in a queue (days, not minutes).
        """
        async with self.connection() as conn:
            status = await conn.execute(
                "DELETE FROM processed_messages"
                " WHERE recorded_at < clock_timestamp() - $1::interval",
                older_than,
            )
        return int(status.split()[-1])

    # -- retention (the SQL lives in postgres_retention) -----------------------------------
    # Deletions and imports take the append lock: their checks (the newest event, stream
    # versions) stay true until COMMIT, and imported positions are visible in commit order.

    async def expire(self, groups: Sequence[Expiry]) -> ExpireResult:
        """As ``SqliteEventStore.expire``."""
        if not groups:
            return ExpireResult((), {})
        async with self.connection() as conn, append_transaction(conn, self._lock_key):
            return await retention.expire(conn, groups)

    async def import_events(self, events: Sequence[RecordedEvent]) -> tuple[int, int]:
        """As ``SqliteEventStore.import_events``."""
        async with self.connection() as conn, append_transaction(conn, self._lock_key):
            return await retention.import_rows(conn, events)

    async def reclaim_space(self, *, full: bool = False) -> int:
        """VACUUM the tables retention empties (see postgres_retention); 0 (PostgreSQL
        reuses the space rather than shrinking files, except with ``full``)."""
        async with self.connection() as conn:
            await retention.reclaim(conn, full)
        return 0

    async def store_size(self) -> dict[str, int]:
        async with self.connection() as conn:
            return await retention.size(conn)

    async def mark_expired(self, table: str, task_ids: Sequence[str]) -> int | None:
        if not task_ids:
            return 0
        async with self.connection() as conn:
            return await retention.mark_expired(conn, table, task_ids)

    async def min_position(self, table: str) -> int | None:
        async with self.connection() as conn:
            return await retention.min_position(conn, table)

    # -- outbox (relay side; the SQL lives in postgres_outbox) ---------------------------

    async def outbox_take_own(
        self, owner: str, ids: Sequence[int], claim_seconds: float
    ) -> list[OutboxRow]:
        async with self.connection() as conn, conn.transaction():
            return await take_own(conn, owner, ids, claim_seconds)

    async def outbox_claim_due(
        self, owner: str, limit: int, claim_seconds: float
    ) -> list[OutboxRow]:
        async with self.connection() as conn, conn.transaction():
            return await claim_due(conn, owner, limit, claim_seconds)

    async def outbox_done(self, ids: Sequence[int]) -> None:
        async with self.connection() as conn:
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", list(ids))

    async def outbox_release(self, ids: Sequence[int], delay_seconds: float) -> None:
        async with self.connection() as conn:
            await release(conn, ids, delay_seconds)

    async def outbox_pending(self) -> int:
        async with self.connection() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM outbox"))

    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        async with self.connection() as conn:
            return await acquire_lease(conn, name, owner, ttl_seconds)

    async def release_lease(self, name: str, owner: str) -> None:
        async with self.connection() as conn:
            await conn.execute("DELETE FROM leases WHERE name = $1 AND owner = $2", name, owner)
