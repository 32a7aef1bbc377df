"""One consumer's counters: handled, retried and dead-lettered messages, handling time.

Per message the consumer pays one dict lookup for label children bound once
per message type, a counter increment and a histogram observation.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from broker import tracing
from broker.metrics_registry import (
    DEAD_LETTERS,
    HANDLING_SECONDS,
    MESSAGES_HANDLED,
    RETRIES,
)
from contracts.registry import lookup

OTHER_TYPE = "other"  # the label of a message type no contract knows (never the raw text)


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

    def woken(self, type_name: str | None) -> None:
        """A wake-up was taken without decoding: counted as handled (acked)."""
        self._children(type_name).acked.inc()

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
