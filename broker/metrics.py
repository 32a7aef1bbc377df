"""Prometheus metrics of one process: definitions, the consumer's hooks, the HTTP endpoint.

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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from broker import tracing
from broker.connection import BrokerConnection
from broker.inspect import queue_stats
from contracts.registry import lookup

if TYPE_CHECKING:
    from aiohttp import web

    from broker.topology import QueueSpec

log = structlog.get_logger(__name__)

REGISTRY = CollectorRegistry()
LABELS = ("worker", "replica")
METRICS_HOST_ENV = "RALLY_METRICS_HOST"
DEFAULT_HOST = "0.0.0.0"  # scraped from other hosts, as exporters are
SAMPLE_INTERVAL_S = 5.0
OTHER_TYPE = "other"  # the label of a message type no contract knows (never the raw text)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

MESSAGES_HANDLED = Counter(
    "rally_messages_handled",
    "Messages settled (each of a bundle counts), by type and outcome (acked, retried, ...).",
    (*LABELS, "type", "outcome"),
    registry=REGISTRY,
)
HANDLING_SECONDS = Histogram(
    "rally_message_handling_seconds",
    "Time a handler took for one message (a batch handler: the whole batch), by type.",
    (*LABELS, "type"),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RETRIES = Counter(
    "rally_message_retries",
    "Handler failures sent back through a delay queue, by type and exception type.",
    (*LABELS, "type", "error_type"),
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "rally_dead_letters",
    "Messages dead-lettered, by reason (malformed, invalid, handler_error, ...).",
    (*LABELS, "reason"),
    registry=REGISTRY,
)
QUEUE_MESSAGES = Gauge(
    "rally_queue_messages",
    "Messages ready in a queue this process consumes (and in its dead-letter queue).",
    (*LABELS, "queue"),
    registry=REGISTRY,
)
QUEUE_CONSUMERS = Gauge(
    "rally_queue_consumers",
    "Consumers attached to a queue this process consumes.",
    (*LABELS, "queue"),
    registry=REGISTRY,
)


# ---- the consumer's hooks ----


@dataclass(frozen=True, slots=True)
class _TypeChildren:
    label: str
    acked: Any
    retried: Any
    dead_lettered: Any
    seconds: Any


class ConsumerMetrics:
    """One consumer's counters, with label children bound once per message type."""

    __slots__ = ("_by_type", "_dead", "_retries", "replica", "worker")

    def __init__(self, worker: str, replica: str) -> None:
        self.worker = worker
        self.replica = replica
        self._by_type: dict[str | None, _TypeChildren] = {}
        self._retries: set[tuple[str, str]] = set()
        self._dead: set[str] = set()

    def _children(self, type_name: str | None) -> _TypeChildren:
        children = self._by_type.get(type_name)
        if children is not None:
            return children
        # only contract names become labels: the AMQP type is whatever a sender wrote
        known = type_name is not None and lookup(type_name) is not None
        label = type_name if known and type_name is not None else OTHER_TYPE
        children = self._by_type.get(label)
        if children is None:
            children = _TypeChildren(
                label,
                MESSAGES_HANDLED.labels(self.worker, self.replica, label, "acked"),
                MESSAGES_HANDLED.labels(self.worker, self.replica, label, "retried"),
                MESSAGES_HANDLED.labels(self.worker, self.replica, label, "dead_lettered"),
                HANDLING_SECONDS.labels(self.worker, self.replica, label),
            )
            self._by_type[label] = children
        if known:
            self._by_type[type_name] = children
        return children

    def ran(self, type_name: str, started: float) -> None:
        """A handler finished (or raised) after starting at ``started`` (perf_counter)."""
        self._children(type_name).seconds.observe(time.perf_counter() - started)

    def acked(self, type_name: str, started: float) -> None:
        """A handler succeeded and its message is acked."""
        children = self._children(type_name)
        children.seconds.observe(time.perf_counter() - started)
        children.acked.inc()

    def retried(self, type_name: str | None, error_type: str) -> None:
        children = self._children(type_name)
        children.retried.inc()
        RETRIES.labels(self.worker, self.replica, children.label, error_type).inc()
        self._retries.add((children.label, error_type))
        tracing.mark_failed(f"retried after {error_type}")

    def dead_lettered(self, type_name: str | None, reason: str) -> None:
        self._children(type_name).dead_lettered.inc()
        DEAD_LETTERS.labels(self.worker, self.replica, reason).inc()
        self._dead.add(reason)
        tracing.mark_failed(f"dead-lettered: {reason}")

    def close(self) -> None:
        """Drop this consumer's series: a process that opens a client per request must not
        keep a series for every client it ever had."""
        w, r = self.worker, self.replica
        for label in {children.label for children in self._by_type.values()}:
            for outcome in ("acked", "retried", "dead_lettered"):
                _forget(MESSAGES_HANDLED, w, r, label, outcome)
            _forget(HANDLING_SECONDS, w, r, label)
        for label, error_type in self._retries:
            _forget(RETRIES, w, r, label, error_type)
        for reason in self._dead:
            _forget(DEAD_LETTERS, w, r, reason)
        self._by_type.clear()
        self._retries.clear()
        self._dead.clear()


def _forget(family: Counter | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        family.remove(*labels)


# ---- gauges computed at scrape time ----

Sample = tuple[str, Sequence[str], float]  # family name, label values, value
Source = Callable[[], Iterable[Sample]]


class ScrapeGauges(Collector):
    """Gauge families whose samples come from sources read at each scrape.

    A source is a function over state the process already keeps (a projection,
    an agent's running tasks): nothing is updated per message.
    """

    def __init__(self, families: Mapping[str, tuple[str, Sequence[str]]]) -> None:
        self.families = dict(families)  # name → (help, label names)
        self._sources: list[Source] = []
        REGISTRY.register(self)

    def attach(self, source: Source) -> Callable[[], None]:
        """Read ``source`` at every scrape until the returned function is called."""
        self._sources.append(source)

        def detach() -> None:
            with contextlib.suppress(ValueError):
                self._sources.remove(source)

        return detach

    def describe(self) -> Iterator[Metric]:
        for name, (doc, labels) in self.families.items():
            yield GaugeMetricFamily(name, doc, labels=labels)

    def collect(self) -> Iterator[Metric]:
        out = {
            name: GaugeMetricFamily(name, doc, labels=labels)
            for name, (doc, labels) in self.families.items()
        }
        for source in list(self._sources):
            try:
                samples = list(source())
            except Exception:  # a broken source must not cost the whole scrape
                log.warning("metrics.source_failed", exc_info=True)
                continue
            for name, labels, value in samples:
                out[name].add_metric(list(labels), value)
        yield from out.values()


AGENT_GAUGES = ScrapeGauges(
    {
        "rally_agent_running_tasks": ("Tasks an agent runs now.", LABELS),
        "rally_agent_capacity": ("Tasks an agent runs at most at once.", LABELS),
    }
)


# ---- queue depth and consumers, sampled ----


class _Sampled(Protocol):
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
        consumers: Sequence[_Sampled],
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


# ---- the HTTP endpoint ----


class MetricsServer:
    """``GET /metrics`` on ``host:port``, in this event loop (so scrapes read state safely)."""

    def __init__(self, port: int, host: str | None = None) -> None:
        self.host = host or os.environ.get(METRICS_HOST_ENV) or DEFAULT_HOST
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> MetricsServer:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", _scrape)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        # our own socket, so that port 0 (any free port) can tell which port it got
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            await runner.cleanup()
            raise OSError(
                exc.errno, f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner
        log.info("metrics.serving", host=self.host, port=self.port, path="/metrics")
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _scrape(request: web.Request) -> web.Response:
    from aiohttp import web

    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})


_shared: dict[int, tuple[MetricsServer, int]] = {}  # port → (server, users)


async def serve(port: int, host: str | None = None) -> MetricsServer:
    """The server on ``port``, started if this process has none there yet (several agents
    in one process share it); port 0 always starts a new one on a free port."""
    if port in _shared:
        server, users = _shared[port]
        _shared[port] = (server, users + 1)
        return server
    server = await MetricsServer(port, host).start()
    if port:
        _shared[port] = (server, 1)
    return server


async def release(server: MetricsServer, port: int) -> None:
    """Done with a server from :func:`serve`; the last user closes it."""
    shared = _shared.get(port) if port else None
    if shared is None or shared[0] is not server:
        await server.close()
        return
    if shared[1] > 1:
        _shared[port] = (server, shared[1] - 1)
        return
    del _shared[port]
    await server.close()


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
    consumers: Sequence[_Sampled],
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
    agent: _Agent, port: int | None, conn: BrokerConnection, inbox: _Sampled
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


def port_number(text: str) -> int:
    """``--metrics-port`` as argparse reads it: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r} (0 to 65535)")
    return port
