"""The retention job inside the workers: one replica at a time, every few minutes.

It runs beside the task manager (``rally worker tasks`` and ``rally worker all``), since
what it deletes are the task manager's streams. Every replica runs the loop; the store
lease ``retention`` lets one of them do a run at a time, and the others find it taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Protocol

import structlog

from workers.retention.job import RetentionStore, run_once
from workers.retention.policy import RetentionSettings
from workers.runtime.clock import Clock, SystemClock
from workers.runtime.settings import WorkerSettings
from workers.store.errors import StoreError

log = structlog.get_logger(__name__)

LEASE = "retention"


class LeaseStore(RetentionStore, Protocol):
    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool: ...

    async def release_lease(self, name: str, owner: str) -> None: ...


class RetentionService:
    name = "retention"

    def __init__(
        self,
        store: LeaseStore,
        settings: RetentionSettings,
        *,
        replica: str,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.owner = f"{replica}:{uuid.uuid4().hex[:8]}"
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="retention")
        log.info(
            "retention.started",
            retention=str(self.settings.retention) if self.settings.retention else "forever",
            processed_horizon=str(self.settings.processed_horizon),
            archive=str(self.settings.archive),
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        interval = self.settings.interval.total_seconds()
        # not at once: a replica starting (or restarting in a loop) does its own work first
        await asyncio.sleep(min(interval, 60.0))
        while True:
            await self.run_if_free()
            await asyncio.sleep(interval)

    async def run_if_free(self) -> bool:
        """One run if no other replica is doing one; whether it ran."""
        # A run that outlives the lease may overlap the next one elsewhere: harmless (a
        # group that changed stays, and import skips events exported twice), only wasted.
        ttl = max(600.0, 2 * self.settings.interval.total_seconds())
        try:
            if not await self.store.acquire_lease(LEASE, self.owner, ttl):
                return False
            try:
                await run_once(self.store, self.settings, self.clock.now())
                self.runs += 1
            finally:
                await self.store.release_lease(LEASE, self.owner)
        except (StoreError, OSError) as exc:  # the store or the archive: try next time
            log.warning("retention.failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True


def retention_service(
    store: LeaseStore, settings: WorkerSettings, replica: str
) -> RetentionService:
    """The service for a worker replica, from RALLY_RETENTION* and the broker's settings."""
    return RetentionService(
        store, RetentionSettings.from_env(broker=settings.broker), replica=replica
    )
