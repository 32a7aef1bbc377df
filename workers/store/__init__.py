"""The event store: append-only history, optimistic concurrency, a transactional outbox.

``open_store(url)`` picks the adapter from the URL:

- ``sqlite:///path/to.db`` (or a bare path, or ``sqlite:///:memory:``) → SQLite,
  the embedded default: ``sqlite:///./var/rally.db``.
- ``postgresql://...`` or ``postgres://...`` → PostgreSQL (add ``?schema=NAME``
  to keep the store in its own schema).

Set ``RALLY_STORE_URL`` to choose; ``default_store_url()`` reads it.
"""

from __future__ import annotations

import os

from workers.store.base import (
    NO_METADATA,
    AppendOutcome,
    AppendRequest,
    AppendResult,
    BatchEventStore,
    EventStore,
    Metadata,
    NewEvent,
    OutboxMessage,
    OutboxRow,
    OutboxStore,
    OutgoingRecord,
    Publishes,
    RecordedEvent,
    StreamAppend,
    stream_category,
)
from workers.store.errors import (
    ConcurrencyError,
    DuplicateEventId,
    StoreError,
    StoreUnavailable,
)
from workers.store.postgres import PostgresEventStore
from workers.store.sqlite import SqliteEventStore

DEFAULT_STORE_URL = "sqlite:///./var/rally.db"
STORE_URL_ENV = "RALLY_STORE_URL"

__all__ = [
    "DEFAULT_STORE_URL",
    "NO_METADATA",
    "AppendOutcome",
    "AppendRequest",
    "AppendResult",
    "BatchEventStore",
    "ConcurrencyError",
    "DuplicateEventId",
    "EventStore",
    "Metadata",
    "NewEvent",
    "OutboxMessage",
    "OutboxRow",
    "OutboxStore",
    "OutgoingRecord",
    "PostgresEventStore",
    "Publishes",
    "RecordedEvent",
    "SqliteEventStore",
    "StoreError",
    "StoreUnavailable",
    "StreamAppend",
    "default_store_url",
    "open_store",
    "stream_category",
]


def default_store_url() -> str:
    return os.environ.get(STORE_URL_ENV) or DEFAULT_STORE_URL


def open_store(
    url: str | None = None, *, publishes: Publishes | None = None
) -> SqliteEventStore | PostgresEventStore:
    """The adapter for ``url`` (default: ``default_store_url()``), not yet started.

    The return type is the concrete adapter, so the relay and the group committer
    can use it too; plain callers treat it as an ``EventStore``. ``publishes``: which
    events get an outbox row (see ``Publishes``; None: every event).
    """
    url = url or default_store_url()
    scheme, sep, rest = url.partition("://")
    if not sep:
        return SqliteEventStore(url, publishes=publishes)  # a bare path
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return PostgresEventStore(url, publishes=publishes)
    if scheme == "sqlite":
        # sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:
        if not rest.startswith("/"):
            raise StoreError(f"sqlite URL needs three slashes: sqlite:///path, got {url!r}")
        return SqliteEventStore(rest[1:] or ":memory:", publishes=publishes)
    raise StoreError(f"unknown store URL scheme {scheme!r} in {url!r} (sqlite or postgresql)")
