"""Group commit: many concurrent appends, one transaction.

A worker handling hundreds of messages at once would otherwise pay one
transaction (and, on SQLite, one fsync-able commit; on PostgreSQL, five round
trips under the global append lock) per message. ``GroupCommitter`` queues the
``append``/``append_many`` calls of all tasks and hands whatever has piled up
to the adapter's ``append_batch`` as one transaction, while the previous batch
commits. No timer: under light load a call commits alone, immediately; under
heavy load batches grow by themselves.

Each request keeps its own checks, applied in arrival order: a request whose
expected version does not match (possibly because an earlier request of the
same batch moved the stream) fails alone with ``ConcurrencyError``; the
others commit. If the batch fails for another reason (say a duplicate event
id in one request) the requests are retried one by one so only the culprit
fails. ``StoreUnavailable`` fails the whole batch: a retry would not help now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from workers.store.base import (
    NO_METADATA,
    AppendOutcome,
    AppendRequest,
    AppendResult,
    Metadata,
    OutboxMessage,
    Store,
    StreamAppend,
)
from workers.store.common import StoreFront
from workers.store.errors import StoreError, StoreUnavailable

log = structlog.get_logger(__name__)

Pending = tuple[AppendRequest, "asyncio.Future[AppendResult]"]


class GroupCommitter(StoreFront):
    """An ``EventStore`` that coalesces concurrent appends into shared transactions."""

    store: Store

    def __init__(self, store: Store, *, max_batch: int = 500) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: list[Pending] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        """Commit what is queued, then close the store."""
        await self.stop()
        await self.store.close()

    async def stop(self) -> None:
        """Commit what is queued and stop the background committer; the store stays open."""
        task, self._task = self._task, None
        if task is not None:
            if not task.done():
                await self._idle.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- appends -------------------------------------------------------------------

    async def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        metadata: Metadata = NO_METADATA,
        idempotency_key: str | None = None,
        outbox: Sequence[OutboxMessage] = (),
        cancel_timers_of: Sequence[str] = (),
    ) -> AppendResult:
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        request = AppendRequest(appends, metadata, idempotency_key, outbox, cancel_timers_of)
        self._queue.append((request, future))
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="group-commit")
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                # A caller that gave up before its turn is dropped, not committed.
                live = [(r, f) for r, f in batch if not f.done()]
                if live:
                    try:
                        await self._commit(live)
                    except BaseException as exc:
                        # whatever went wrong, no caller may wait forever on its future
                        for _, future in live:
                            _settle_error(future, StoreError(f"group commit failed: {exc!r}"))
                        if not isinstance(exc, Exception):
                            raise
            self._idle.set()

    async def _commit(self, batch: list[Pending]) -> None:
        try:
            outcomes = await self.store.append_batch([r for r, _ in batch])
        except StoreUnavailable as exc:
            for _, future in batch:
                _settle_error(future, exc)
            return
        except StoreError as exc:
            if len(batch) == 1:
                _settle_error(batch[0][1], exc)
                return
            log.warning(
                "group_commit.batch_failed_retrying_singly", size=len(batch), error=str(exc)
            )
            for item in batch:
                await self._commit([item])
            return
        except BaseException as exc:
            for _, future in batch:
                _settle_error(future, StoreError(f"group commit interrupted: {exc!r}"))
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)

    # leases fence single-active workers (the allocator); they must not be batched away
    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return await self.store.acquire_lease(name, owner, ttl_seconds)

    async def release_lease(self, name: str, owner: str) -> None:
        await self.store.release_lease(name, owner)


def _settle(future: asyncio.Future[AppendResult], outcome: AppendOutcome) -> None:
    if future.done():
        return
    if isinstance(outcome, AppendResult):
        future.set_result(outcome)
    else:
        future.set_exception(outcome)


def _settle_error(future: asyncio.Future[AppendResult], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
