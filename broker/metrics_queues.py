"""Depth and consumer count of the queues a process reads, sampled in the background."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import structlog

from broker.connection import BrokerConnection
from broker.inspect import queue_stats
from broker.metrics_registry import QUEUE_CONSUMERS, QUEUE_MESSAGES

if TYPE_CHECKING:
    from broker.topology import QueueSpec

log = structlog.get_logger("broker.metrics")

SAMPLE_INTERVAL_S = 5.0


class Sampled(Protocol):
    @property
    def spec(self) -> QueueSpec: ...

    @property
    def worker(self) -> str: ...

    @property
    def replica(self) -> str: ...


class QueueSampler:
    """Depth and consumer count of the queues these consumers read, every ``interval_s``.

    A passive declare per queue (``broker.inspect.queue_stats``): cheap, but a
    round trip each, so it runs in the background and a scrape reads the last values.
    """

    def __init__(
        self,
        conn: BrokerConnection,
        consumers: Sequence[Sampled],
        *,
        interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self.conn = conn
        self.interval_s = interval_s
        self.targets: dict[str, tuple[str, str]] = {}  # queue → (worker, replica)
        for consumer in consumers:
            labels = (consumer.worker, consumer.replica)
            self.targets[consumer.spec.name] = labels
            if consumer.spec.dead_letter:
                self.targets[consumer.spec.dlq] = labels
        self._task: asyncio.Task[None] | None = None

    async def sample_once(self) -> None:
        for stats in await queue_stats(self.conn, list(self.targets)):
            worker, replica = self.targets[stats.name]
            if stats.exists:
                QUEUE_MESSAGES.labels(worker, replica, stats.name).set(stats.messages)
                QUEUE_CONSUMERS.labels(worker, replica, stats.name).set(stats.consumers)

    def start(self) -> QueueSampler:
        if self.targets and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="metrics-queue-sampler")
        return self

    async def _loop(self) -> None:
        while True:
            try:
                await self.sample_once()
            except Exception as exc:  # the broker is away: keep the last values, try again
                log.debug("metrics.sample_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for queue, (worker, replica) in self.targets.items():
            for gauge in (QUEUE_MESSAGES, QUEUE_CONSUMERS):
                with contextlib.suppress(KeyError):
                    gauge.remove(worker, replica, queue)
