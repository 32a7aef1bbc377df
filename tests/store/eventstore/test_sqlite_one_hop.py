"""The SQLite adapter runs each write transaction and each read as one call on its
connection's thread ("one hop"): counted here, and what that must not break — a failure
inside the transaction rolls all of it back, a cancelled caller leaves a usable writer.

Failures and stalls come from the real database: triggers, a user function on the
writer's connection, and a second connection holding the write lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from workers.store import (
    NewEvent,
    OutboxMessage,
    SqliteEventStore,
    StoreError,
    StoreUnavailable,
    open_store,
)
from workers.store.sqlite_conn import Connection

T = TypeVar("T")


def ev(**data: object) -> NewEvent:
    return NewEvent("Happened", data)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    s = SqliteEventStore(tmp_path / "store.db")
    await s.start()
    yield s
    await s.close()


@pytest.fixture
def side(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A second connection to the store's file (another process, as far as SQLite knows)."""
    db = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    yield db
    db.close()


def writer_of(store: SqliteEventStore) -> Connection:
    assert store._writer is not None
    return store._writer


def reader_of(store: SqliteEventStore) -> Connection:
    assert store._reader is not None
    return store._reader


class Hops:
    """Counts the calls made on a connection's thread (each call is one hop)."""

    def __init__(self, connection: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = connection.run

        async def counted(fn: Callable[[sqlite3.Connection], T]) -> T:
            self.count += 1
            return await real(fn)

        monkeypatch.setattr(connection, "run", counted)

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


async def test_each_write_transaction_and_each_read_is_one_hop(
    store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes, reads = Hops(writer_of(store), monkeypatch), Hops(reader_of(store), monkeypatch)
    message = OutboxMessage("inbox", "agent.a1", b"{}", "notice-1")
    await store.append("task-1", 0, [ev(), ev()], outbox=[message], idempotency_key="k")
    assert (writes.take(), reads.take()) == (1, 0)
    assert (await store.append("task-1", 0, [ev()], idempotency_key="k")).duplicate
    assert (writes.take(), reads.take()) == (1, 0)

    await store.read("task-1")
    await store.read_all()
    await store.stream_version("task-1")
    assert (writes.take(), reads.take()) == (0, 3)

    rows = await store.outbox_claim_due("sweeper", 10, 30.0)  # a look, then the claim
    assert len(rows) == 3
    assert (writes.take(), reads.take()) == (1, 1)
    assert await store.outbox_claim_due("sweeper", 10, 30.0) == []  # nothing due: a look
    assert (writes.take(), reads.take()) == (0, 1)
    await store.outbox_release([rows[0].id], 0.0)
    await store.outbox_done([r.id for r in rows[1:]])
    assert await store.outbox_take_own("sweeper", [rows[0].id], 30.0) == []  # released
    assert await store.acquire_lease("allocator", "me", 10.0)
    await store.release_lease("allocator", "me")
    await store.save_snapshot("task-1", 2, {"s": 1})
    assert writes.take() == 6


async def test_an_error_inside_the_transaction_rolls_all_of_it_back(
    store: SqliteEventStore, side: sqlite3.Connection
) -> None:
    await store.append("task-0", 0, [ev()])
    # The last statement of the append fails: events and outbox rows are written by then.
    side.execute(
        "CREATE TRIGGER refuse_key BEFORE INSERT ON processed_messages"
        " WHEN NEW.key = 'poison' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    message = OutboxMessage("inbox", "agent.a1", b"{}", "notice-1")
    with pytest.raises(StoreError, match="refused by the test"):
        await store.append("task-1", 0, [ev(), ev()], outbox=[message], idempotency_key="poison")
    assert await store.last_position() == 1
    assert await store.stream_version("task-1") == 0
    assert await store.outbox_pending() == 1  # task-0's event only
    assert not side.in_transaction
    ((keys,),) = side.execute("SELECT count(*) FROM processed_messages").fetchall()
    assert keys == 0

    side.execute("DROP TRIGGER refuse_key")
    result = await store.append("task-1", 0, [ev()], idempotency_key="poison")
    assert not result.duplicate
    assert result.positions == (2,)


async def test_a_locked_database_is_store_unavailable_and_nothing_is_left_open(
    tmp_path: Path, side: sqlite3.Connection
) -> None:
    store = SqliteEventStore(tmp_path / "store.db", busy_timeout_ms=50)
    await store.start()
    try:
        await store.append("task-1", 0, [ev()])
        side.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.append("task-1", 1, [ev()])
        with pytest.raises(StoreUnavailable):
            await store.outbox_done([1])
        side.execute("ROLLBACK")
        assert (await store.append("task-1", 1, [ev()])).positions == (2,)
        assert await store.outbox_pending() == 2
    finally:
        await store.close()


class Gate:
    """Holds the writer's thread inside a call until ``open``: the call is then known to
    be running, with no timing involved."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, *_: object) -> None:
        self.entered.set()
        self.released.wait(60)  # a bound only so a broken test cannot hang the run

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 60)

    def open(self) -> None:
        self.released.set()


async def test_a_caller_cancelled_while_its_append_runs_leaves_the_writer_usable(
    store: SqliteEventStore, side: sqlite3.Connection
) -> None:
    gate = Gate()
    await writer_of(store).run(lambda db: db.create_function("gate", 0, gate))
    side.execute(
        "CREATE TRIGGER gated AFTER INSERT ON events WHEN NEW.stream = 'task-gated'"
        " BEGIN SELECT gate(); END"
    )
    message = OutboxMessage("inbox", "agent.a1", b"{}", "notice-1")
    append = asyncio.create_task(
        store.append("task-gated", 0, [ev()], outbox=[message], idempotency_key="k")
    )
    await gate.wait_entered()  # inside the transaction, the event row inserted
    append.cancel()
    with pytest.raises(asyncio.CancelledError):
        await append
    queued = asyncio.create_task(store.append("task-next", 0, [ev()]))
    gate.open()

    # The transaction was under way: it ran to its end and committed all of it.
    assert (await queued).positions == (2,)
    assert await store.stream_version("task-gated") == 1
    assert await store.outbox_pending() == 3
    assert (await store.append("task-gated", 0, [ev()], idempotency_key="k")).duplicate
    assert (await store.append("task-gated", 1, [ev()])).positions == (3,)


async def test_a_caller_cancelled_before_its_append_starts_writes_nothing(
    store: SqliteEventStore,
) -> None:
    gate = Gate()
    held = asyncio.create_task(writer_of(store).run(gate))  # the writer is busy
    await gate.wait_entered()
    append = asyncio.create_task(store.append("task-1", 0, [ev()]))
    await asyncio.sleep(0)  # one loop turn: the append is handed to the writer, queued
    append.cancel()
    with pytest.raises(asyncio.CancelledError):
        await append
    gate.open()
    await held

    assert await store.stream_version("task-1") == 0
    assert (await store.append("task-1", 0, [ev()])).positions == (1,)


async def test_in_memory_store_serves_concurrent_reads_and_writes() -> None:
    store = open_store("sqlite:///:memory:")
    await store.start()
    try:
        appends = asyncio.gather(*(store.append(f"task-{i}", 0, [ev(i=i)]) for i in range(20)))
        reads = asyncio.gather(*(store.read_all() for _ in range(5)))
        results, _ = await asyncio.gather(appends, reads)
        assert sorted(p for r in results for p in r.positions) == list(range(1, 21))
        assert len(await store.read_all()) == 20
    finally:
        await store.close()


async def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "store.db")
    await store.start()
    writer = writer_of(store)
    await store.close()
    with pytest.raises(StoreError, match="not started"):
        await store.append("task-1", 0, [ev()])
    with pytest.raises(StoreError, match="closed"):
        await writer.run(lambda db: None)
