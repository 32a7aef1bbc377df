"""PostgreSQL plumbing: the pool's reset, the append transaction, error translation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import asyncpg

from workers.store.errors import ConcurrencyError, DuplicateEventId, StoreError, StoreUnavailable
from workers.store.postgres_schema import Conn


async def keep_session(conn: Conn) -> None:
    """Pool reset: nothing to undo. We never LISTEN, SET or take session-level locks,
    and asyncpg still rolls back a transaction left open. Saves a round trip per use."""


@contextlib.asynccontextmanager
async def append_transaction(conn: Conn, lock_key: int) -> AsyncIterator[None]:
    """An append transaction: BEGIN and the append lock in one round trip."""
    try:
        await conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({int(lock_key)})")
        yield
    except BaseException:
        try:
            await conn.execute("ROLLBACK")
        except BaseException:
            conn.terminate()  # state unknown: never hand it back to the pool
        raise
    await conn.execute("COMMIT")


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """Driver errors become store errors here, and nowhere else."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "events_id":
            raise DuplicateEventId(f"an appended event id is already recorded: {exc}") from exc
        if exc.constraint_name == "events_stream_version":
            # Only reachable if something wrote without the append lock.
            raise ConcurrencyError("?", None, -1) from exc
        raise StoreError(f"postgres: {exc}") from exc
    except (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
        asyncpg.SerializationError,
        asyncpg.DeadlockDetectedError,
        asyncpg.QueryCanceledError,
        # a pooled connection left mid-operation when the server went away
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
    ) as exc:
        raise StoreUnavailable(f"postgres: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"postgres: {exc}") from exc
