"""Prometheus metrics of one process: what it exposes, and every name from one import.

One registry per process (:data:`REGISTRY`), served on ``--metrics-port`` at
``/metrics``. A process may hold several workers, replicas or agents (``rally
worker all``, in-process tests, a group of demo agents), so every series
carries ``worker`` and ``replica`` labels: series from different processes
add up under the same names.

Per message the consumer pays one dict lookup for label children bound once
per message type, a counter increment and a histogram observation. Gauges of
state the process already holds (an agent's load, the workers' projections)
are computed when Prometheus scrapes, not kept up to date per message; queue
depths are sampled in the background (:class:`QueueSampler`, every 5 s).

This module is what a process exposes (:func:`expose`, :func:`expose_agent`);
the families live in ``metrics_registry``, a consumer's counters in
``metrics_consumer``, the sampler in ``metrics_queues``, the HTTP endpoint
in ``metrics_server``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import structlog

from broker.connection import BrokerConnection

# One job per module; every name stays importable from here, as it always was.
from broker.metrics_consumer import OTHER_TYPE as OTHER_TYPE
from broker.metrics_consumer import ConsumerMetrics as ConsumerMetrics
from broker.metrics_queues import SAMPLE_INTERVAL_S as SAMPLE_INTERVAL_S
from broker.metrics_queues import QueueSampler as QueueSampler
from broker.metrics_queues import Sampled
from broker.metrics_registry import AGENT_GAUGES as AGENT_GAUGES
from broker.metrics_registry import DEAD_LETTERS as DEAD_LETTERS
from broker.metrics_registry import HANDLING_SECONDS as HANDLING_SECONDS
from broker.metrics_registry import LABELS as LABELS
from broker.metrics_registry import LATENCY_BUCKETS as LATENCY_BUCKETS
from broker.metrics_registry import MESSAGES_HANDLED as MESSAGES_HANDLED
from broker.metrics_registry import QUEUE_CONSUMERS as QUEUE_CONSUMERS
from broker.metrics_registry import QUEUE_MESSAGES as QUEUE_MESSAGES
from broker.metrics_registry import REGISTRY as REGISTRY
from broker.metrics_registry import RETRIES as RETRIES
from broker.metrics_registry import Sample as Sample
from broker.metrics_registry import ScrapeGauges as ScrapeGauges
from broker.metrics_registry import Source as Source
from broker.metrics_server import DEFAULT_HOST as DEFAULT_HOST
from broker.metrics_server import METRICS_HOST_ENV as METRICS_HOST_ENV
from broker.metrics_server import MetricsServer as MetricsServer
from broker.metrics_server import port_number as port_number
from broker.metrics_server import release as release
from broker.metrics_server import serve as serve

log = structlog.get_logger(__name__)


class Exposure:
    """What one ``--metrics-port`` started — server, samplers, sources — undone by ``close``."""

    def __init__(self) -> None:
        self.port: int | None = None  # the port bound (useful when 0 was asked)
        self._undo: list[Callable[[], Any]] = []

    def on_close(self, undo: Callable[[], Any]) -> None:
        self._undo.append(undo)

    async def close(self) -> None:
        undo, self._undo = self._undo, []
        for step in reversed(undo):
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # closing goes on: the rest must still be released
                log.warning("metrics.close_failed", exc_info=True)

    async def __aenter__(self) -> Exposure:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def expose(
    exposure: Exposure,
    port: int,
    conn: BrokerConnection,
    consumers: Sequence[Sampled],
    *,
    host: str | None = None,
) -> Exposure:
    """Serve this process's metrics on ``port`` and sample the consumers' queues."""
    sampler = QueueSampler(conn, consumers).start()
    exposure.on_close(sampler.stop)
    server = await serve(port, host)
    exposure.port = server.port
    exposure.on_close(lambda: release(server, port))
    return exposure


class _Agent(Protocol):
    agent_id: str
    capacity: int

    @property
    def load(self) -> int: ...


async def expose_agent(
    agent: _Agent, port: int | None, conn: BrokerConnection, inbox: Sampled
) -> Exposure:
    """An agent's metrics on ``port`` (None: not served): its inbox consumer's counters,
    the inbox depth, its running tasks and capacity."""
    exposure = Exposure()
    if port is None:
        return exposure

    def gauges() -> Iterator[Sample]:
        labels = ("agent", agent.agent_id)
        yield "rally_agent_running_tasks", labels, float(agent.load)
        yield "rally_agent_capacity", labels, float(agent.capacity)

    exposure.on_close(AGENT_GAUGES.attach(gauges))
    return await expose(exposure, port, conn, [inbox])
