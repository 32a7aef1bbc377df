"""The process's Prometheus registry and the metric families every consumer shares.

One registry per process (:data:`REGISTRY`). A process may hold several
workers, replicas or agents, so every series carries ``worker`` and
``replica`` labels: series from different processes add up under the same names.
Gauges of state the process already holds are computed at scrape time
(:class:`ScrapeGauges`), not kept up to date per message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = structlog.get_logger("broker.metrics")

REGISTRY = CollectorRegistry()
LABELS = ("worker", "replica")

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
