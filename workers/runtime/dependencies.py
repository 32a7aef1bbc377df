"""The store as a message handler sees it: the store being down is the broker's
``DependencyUnavailable``.

workers/store knows nothing of the broker; the consumer (broker/) holds a delivery
unacked, spending none of its attempts, only for a ``DependencyUnavailable``. The
runner hands its services the store behind ``HandlerStore``, which re-raises the
store's ``StoreUnavailable`` as ``StoreDown``: both at once, so code that catches the
store's errors still catches it, and the consumer holds the delivery until the store
is back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from broker.errors import DependencyUnavailable
from workers.store.base import (
    NO_METADATA,
    AppendResult,
    EventStore,
    Metadata,
    OutboxMessage,
    RecordedEvent,
    StreamAppend,
)
from workers.store.common import StoreFront
from workers.store.errors import StoreUnavailable


class StoreDown(StoreUnavailable, DependencyUnavailable):
    """The event store is down or unreachable: hold the message, retry when it is back."""


@contextlib.contextmanager
def store_boundary() -> Iterator[None]:
    """Re-raise the store's ``StoreUnavailable`` as ``StoreDown``."""
    try:
        yield
    except StoreDown:
        raise
    except StoreUnavailable as exc:
        raise StoreDown(str(exc)) from exc


class HandlerStore(StoreFront):
    """The ``EventStore`` a service gets: every call behind ``store_boundary``."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)  # whatever else the wrapped store offers

    async def start(self) -> None:
        with store_boundary():
            await self.store.start()

    async def close(self) -> None:
        with store_boundary():
            await self.store.close()

    async def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        metadata: Metadata = NO_METADATA,
        idempotency_key: str | None = None,
        outbox: Sequence[OutboxMessage] = (),
        cancel_timers_of: Sequence[str] = (),
    ) -> AppendResult:
        with store_boundary():
            return await self.store.append_many(
                appends,
                metadata=metadata,
                idempotency_key=idempotency_key,
                outbox=outbox,
                cancel_timers_of=cancel_timers_of,
            )

    async def read(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        with store_boundary():
            return await self.store.read(stream, from_version)

    async def stream_version(self, stream: str) -> int:
        with store_boundary():
            return await self.store.stream_version(stream)

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, stream_prefix: str | None = None
    ) -> list[RecordedEvent]:
        with store_boundary():
            return await self.store.read_all(from_position, limit, stream_prefix=stream_prefix)

    async def last_position(self) -> int:
        with store_boundary():
            return await self.store.last_position()

    async def save_snapshot(self, stream: str, version: int, state: Mapping[str, Any]) -> None:
        with store_boundary():
            await self.store.save_snapshot(stream, version, state)

    async def load_snapshot(self, stream: str) -> tuple[int, dict[str, Any]] | None:
        with store_boundary():
            return await self.store.load_snapshot(stream)

    # leases fence the single active allocator (found with getattr: not every store has them)
    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        with store_boundary():
            return bool(await self.store.acquire_lease(name, owner, ttl_seconds))  # type: ignore[attr-defined]

    async def release_lease(self, name: str, owner: str) -> None:
        with store_boundary():
            await self.store.release_lease(name, owner)  # type: ignore[attr-defined]
