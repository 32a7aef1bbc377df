"""SQLite plumbing: a connection owned by one thread, one hop per call; error translation.

Why not aiosqlite: it hands each statement to its thread separately, and that
hand-off (queue put, thread wake, GIL hand-over, future resolution) was most of
the cost of a small append, which took six or seven of them. Here the caller
hands the thread a whole function — a write transaction, a read and its
decoding — so each costs one hop. Only the connection's own thread ever touches
the sqlite3 connection (it opens and closes it too), so the driver's same-thread
check stays on.

Why not ``loop.run_in_executor`` with a one-thread ``ThreadPoolExecutor``: the
same idea, but its hop (a concurrent future chained to an asyncio one) measured
clearly slower than a plain queue and ``call_soon_threadsafe``, which is all
this needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from functools import partial
from queue import SimpleQueue
from typing import Any, TypeVar

from workers.store.errors import ConcurrencyError, DuplicateEventId, StoreError, StoreUnavailable

T = TypeVar("T")

# A call for the thread: the caller's future, the function and its arguments.
_Call = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Connection:
    """A plain sqlite3 connection and the one thread that uses it.

    Calls run one at a time, in the order they were made, so a write transaction,
    being one call, never interleaves with another call.

    Cancellation: a caller cancelled before its function starts cancels it (it never
    runs); once started, the function runs to its end — a transaction commits or rolls
    back in full — and only the caller's wait is cancelled.
    """

    def __init__(self, name: str) -> None:
        self._calls: SimpleQueue[_Call | None] = SimpleQueue()
        self._db: sqlite3.Connection | None = None
        # A daemon: a store never closed must not keep the process alive at exit.
        thread = threading.Thread(
            target=_serve, args=(self._calls,), name=f"sqlite-{name}", daemon=True
        )
        thread.start()
        # Ends the thread once this object is closed or forgotten (None: stop).
        self._stop = weakref.finalize(self, self._calls.put, None)

    @classmethod
    async def open(cls, path: str, busy_timeout_ms: int, name: str) -> Connection:
        connection = cls(name)
        try:
            connection._db = await connection._submit(_open, path, busy_timeout_ms)
        except BaseException:
            connection._stop()
            raise
        return connection

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(db)`` on the connection's thread: one hop."""
        if self._db is None:
            raise StoreError("the SQLite connection is closed")
        result: T = await self._submit(fn, self._db)
        return result

    async def transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """``body(db)`` inside one write transaction (see ``write_transaction``): one hop."""
        return await self.run(partial(write_transaction, body))

    async def close(self) -> None:
        """Close after the calls already made; later calls raise ``StoreError``."""
        db, self._db = self._db, None
        try:
            if db is not None:
                await self._submit(_close, db)
        finally:
            self._stop()

    def _submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self._calls.put((future, fn, args))
        return future


def _serve(calls: SimpleQueue[_Call | None]) -> None:
    """The connection's thread: run the calls in order until told to stop."""
    while (call := calls.get()) is not None:
        _run_one(*call)
        del call  # hold nothing between calls


def _run_one(future: asyncio.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if future.cancelled():  # its caller gave up before it started: it never runs
        return
    try:
        result = fn(*args)
    except BaseException as exc:
        _deliver(future, _fail, exc)
    else:
        _deliver(future, _succeed, result)


def _deliver(future: asyncio.Future[Any], settle: Callable[..., None], value: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: no one is waiting
        future.get_loop().call_soon_threadsafe(settle, future, value)


def _succeed(future: asyncio.Future[Any], result: object) -> None:
    if not future.done():  # a caller cancelled while its call ran
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def write_transaction(body: Callable[[sqlite3.Connection], T], db: sqlite3.Connection) -> T:
    """Run ``body`` holding SQLite's write lock: BEGIN IMMEDIATE, COMMIT, or ROLLBACK on
    any error. Runs on the connection's thread, start to end, so a cancelled caller can
    never leave the transaction open or half-done."""
    if db.in_transaction:
        # Only after a ROLLBACK that itself failed (disk error): never wedge the writer.
        db.execute("ROLLBACK")
    db.execute("BEGIN IMMEDIATE")
    try:
        result = body(db)
        db.execute("COMMIT")
    except BaseException:
        # Also after a failed COMMIT, which leaves the transaction open.
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return result


def _open(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """Autocommit mode: the adapter issues BEGIN IMMEDIATE / COMMIT itself."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # WAL: readers never block the writer. NORMAL: durable at checkpoints, and a
        # crash loses at most the last transactions, never corrupts — the usual WAL trade.
        # Incremental: pages freed by retention's deletions can go back to the file system
        # (sqlite_retention.reclaim). Effective only in a file with no table yet (a new
        # store); an older file keeps its mode until a VACUUM.
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    except BaseException:
        db.close()
        raise
    return db


def _close(db: sqlite3.Connection) -> None:
    db.close()


@contextlib.contextmanager
def translate(path: str) -> Iterator[None]:
    """Driver errors become store errors here, and nowhere else."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        text = str(exc)
        if "events.id" in text:
            raise DuplicateEventId(f"an appended event id is already recorded: {exc}") from exc
        if "events.stream" in text:
            # Only reachable if something wrote without the write lock.
            raise ConcurrencyError("?", None, -1) from exc
        raise StoreError(f"sqlite integrity error: {exc}") from exc
    except sqlite3.OperationalError as exc:
        # "database is locked" past busy_timeout, disk full, file unreadable...
        raise StoreUnavailable(f"sqlite store {path}: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite store {path}: {exc}") from exc
