"""The ``readmodels`` service: one replica in the fleet keeps every read model current.

Every worker process runs it; the store's lease ``readmodels`` picks the one
that follows the store, the others stand by and take over when its lease runs
out. Readers catch up in-process anyway (``task_queries.tasks_runner``), so the
service only keeps their tail short; two runners at once are safe (the
checkpoint is a compare-and-set), merely wasted work.

Metrics, read at scrape time from the runner's health: ``rally_readmodel_position``
and ``rally_readmodel_stopped`` (1 while a projection is stopped at a record it
cannot apply; ``rally status`` reads the same from the checkpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

import structlog

from broker.metrics import LABELS, Sample, ScrapeGauges
from contracts.ids import new_id
from workers.readmodels.catalog import projections
from workers.readmodels.runner import Projection, ProjectionRunner
from workers.store.base import EventStore, OutboxStore
from workers.store.errors import StoreError

log = structlog.get_logger(__name__)

NAME = "readmodels"
LEASE = "readmodels"

GAUGES = ScrapeGauges(
    {
        "rally_readmodel_position": (
            "The last store position a read model has applied (the active replica's view).",
            (*LABELS, "projection"),
        ),
        "rally_readmodel_stopped": (
            "1 while a read model is stopped at a record it cannot apply (see rally status).",
            (*LABELS, "projection"),
        ),
    }
)


class ReadModelsService:
    name = NAME

    def __init__(
        self,
        store: EventStore,
        leases: OutboxStore,
        *,
        replica: str,
        interval_s: float = 0.5,
        lease_ttl_s: float = 10.0,
        kept: Sequence[Projection] | None = None,
    ) -> None:
        self.runner = ProjectionRunner(store, kept if kept is not None else projections(store))
        self.leases = leases
        self.replica = replica
        self.owner = f"{NAME}:{replica}:{new_id()}"
        self.interval_s = interval_s
        self.lease_ttl_s = lease_ttl_s
        self.active = False
        self._task: asyncio.Task[None] | None = None
        self._detach: Callable[[], None] | None = None

    async def start(self) -> None:
        self._detach = GAUGES.attach(self._samples)
        self._task = asyncio.create_task(self._follow(), name=f"{NAME}-{self.replica}")

    async def stop(self) -> None:
        if self._detach is not None:
            self._detach()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.active:
            with contextlib.suppress(StoreError):
                await self.leases.release_lease(LEASE, self.owner)
            self.active = False

    async def _follow(self) -> None:
        renew_at = 0.0
        while True:
            try:
                now = time.monotonic()
                if now >= renew_at:  # renew (or try to take) the lease a few times per TTL
                    held = await self.leases.acquire_lease(LEASE, self.owner, self.lease_ttl_s)
                    renew_at = now + self.lease_ttl_s / 3
                    if held != self.active:
                        log.info("readmodels.lease", active=held, replica=self.replica)
                        self.active = held
                if self.active:
                    await self.runner.catch_up()
            except StoreError as exc:  # the store is down or busy: try again next round
                log.warning("readmodels.catch_up_failed", error=str(exc))
            except Exception:  # a bug: say so loudly, and keep the service alive for the rest
                log.exception("readmodels.follow_failed")
            await asyncio.sleep(self.interval_s)

    def _samples(self) -> Iterator[Sample]:
        if not self.active:
            return
        labels = (NAME, self.replica)
        for health in self.runner.health():
            yield "rally_readmodel_position", (*labels, health.name), float(health.position)
            stopped = 1.0 if health.stopped else 0.0
            yield "rally_readmodel_stopped", (*labels, health.name), stopped
