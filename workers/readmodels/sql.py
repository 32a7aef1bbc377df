"""The read-model database: the store's own database, spoken in SQL written once.

Read models live next to the events (the same SQLite file, the same PostgreSQL
schema, ``?schema=`` honoured), so a projection's rows and its checkpoint commit
in one transaction of one database. SQL is written with ``?`` placeholders; the
PostgreSQL adapter numbers them (``$1``, ``$2``...). Portable column types only:
TEXT, BIGINT, BOOLEAN; times are ISO 8601 UTC text with microseconds, which sorts
as time does.

SQLite: writes run on the store's own writer connection (``SqliteEventStore.write``),
not on a connection of their own. SQLite has one write lock per file: a second
connection in the same process would make the store's appends sleep in SQLite's
busy handler while a projection commits; on the writer's thread the commit simply
queues between two appends. It also works for ``:memory:`` stores.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Protocol

from workers.store.errors import StoreError
from workers.store.postgres import PostgresEventStore
from workers.store.sqlite import SqliteEventStore

Params = Sequence[Any]
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    params: Params = ()


class GuardMissed(StoreError):
    """The compare-and-set guard changed no row: another writer moved first (rolled back)."""


class ReadModelDb(Protocol):
    """What the runner and the read-model queries need of the database."""

    dialect: str  # "sqlite" | "postgres"

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        """Rows of one query over committed data."""
        ...

    async def ddl(self, statements: Sequence[str]) -> None:
        """Idempotent schema statements (``IF NOT EXISTS``), in one transaction."""
        ...

    async def commit(self, guard: Statement, writes: Sequence[Statement]) -> None:
        """One transaction: ``guard`` first (an UPDATE that must change a row, else
        ``GuardMissed`` and nothing is written), then ``writes`` in order."""
        ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One statement in its own transaction; how many rows it changed."""
        ...


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2...`` (none inside quoted literals)."""
    out: list[str] = []
    n = 0
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


def _runs(writes: Sequence[Statement]) -> list[tuple[str, list[Params]]]:
    """Consecutive statements with the same SQL, as one ``executemany`` each, in order."""
    return [(sql, [w.params for w in group]) for sql, group in groupby(writes, lambda w: w.sql)]


class SqliteDb:
    dialect = "sqlite"

    def __init__(self, store: SqliteEventStore) -> None:
        self.store = store

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return await self.store.fetch(sql, params)

    async def ddl(self, statements: Sequence[str]) -> None:
        def body(db: sqlite3.Connection) -> None:
            for statement in statements:
                db.execute(statement)

        await self.store.write(body)

    async def commit(self, guard: Statement, writes: Sequence[Statement]) -> None:
        runs = _runs(writes)

        def body(db: sqlite3.Connection) -> None:
            if db.execute(guard.sql, guard.params).rowcount == 0:
                raise GuardMissed(guard.sql)  # raised inside: write_transaction rolls back
            for sql, params in runs:
                db.executemany(sql, params)

        await self.store.write(body)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self.store.write(lambda db: db.execute(sql, params).rowcount)


class PostgresDb:
    dialect = "postgres"

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        async with self.store.connection() as conn:
            return [tuple(r) for r in await conn.fetch(numbered(sql), *params)]

    async def ddl(self, statements: Sequence[str]) -> None:
        async with self.store.connection() as conn, conn.transaction():
            # replicas starting together would race on CREATE ... IF NOT EXISTS
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
            for statement in statements:
                await conn.execute(statement)

    async def commit(self, guard: Statement, writes: Sequence[Statement]) -> None:
        runs = _runs(writes)
        async with self.store.connection() as conn, conn.transaction():
            status = await conn.execute(numbered(guard.sql), *guard.params)
            if _changed(status) == 0:
                raise GuardMissed(guard.sql)  # leaving the block rolls back
            for sql, params in runs:
                if len(params) == 1:
                    await conn.execute(numbered(sql), *params[0])
                else:
                    await conn.executemany(numbered(sql), params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self.store.connection() as conn:
            return _changed(await conn.execute(numbered(sql), *params))


def _changed(status: str) -> int:
    """Rows changed, from a status like ``UPDATE 3`` or ``INSERT 0 1``."""
    with contextlib.suppress(ValueError, IndexError):
        return int(status.split()[-1])
    return 0


def database_for(store: object) -> ReadModelDb:
    """The read-model database of ``store``: the database it keeps its events in.

    ``store`` may be a front (group committer, timing, the handlers' boundary): each keeps
    the store it wraps as ``.store``."""
    inner = store
    for _ in range(8):
        if isinstance(inner, SqliteEventStore):
            return SqliteDb(inner)
        if isinstance(inner, PostgresEventStore):
            return PostgresDb(inner)
        inner = getattr(inner, "store", None)
        if inner is None:
            break
    raise StoreError(f"read models need a SQLite or PostgreSQL store, not {type(store).__name__}")
