"""SQLite plumbing: opening a connection with the right pragmas, error translation."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import aiosqlite

from workers.store.errors import ConcurrencyError, DuplicateEventId, StoreError, StoreUnavailable


async def connect(path: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Autocommit mode: the adapter issues BEGIN IMMEDIATE / COMMIT itself."""
    db = await aiosqlite.connect(path, isolation_level=None)
    # WAL: readers never block the writer. NORMAL: durable at checkpoints, and a
    # crash loses at most the last transactions, never corrupts — the usual WAL trade.
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return db


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
