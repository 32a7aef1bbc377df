"""What a task costs in messages and appends, read from the fleet's own Prometheus counters.

Before and after the measured window the bench reads every process's
``/metrics`` (worker replicas and agents over HTTP, its own client from this
process's registry), adds them up (:class:`Counts`) and divides the difference
by the tasks completed in between (:func:`per_task`):

- deliveries: ``rally_messages_handled`` (every message a consumer settled; each
  member of a bundle counts once);
- appends: ``rally_store_append_seconds`` observations (every append a worker's
  handlers made, before the group committer merges them; one append may write
  the streams of many tasks, as the allocator's placement does);
- events: how far the store's last position moved (the fleet reads it itself);
- publishes and unroutable: the bench's own counters (:mod:`workers.bench.counting`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from broker.metrics import REGISTRY
from workers.bench.counting import BROKER_PUBLISHES, PUBLISHED, UNROUTABLE

log = structlog.get_logger(__name__)

HANDLED_SAMPLE = "rally_messages_handled_total"
APPENDS_SAMPLE = "rally_store_append_seconds_count"
SCRAPE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Counts:
    """Counters summed over processes; publishes are None where some process did not count."""

    delivered: dict[str, float] = field(default_factory=dict)  # by message type
    appends: dict[str, float] = field(default_factory=dict)  # by worker
    published: dict[str, float] | None = None  # by message type
    unroutable: dict[str, float] | None = None
    broker_publishes: float | None = None

    def __add__(self, other: Counts) -> Counts:
        counted = self.published is not None and other.published is not None
        return Counts(
            delivered=_add(self.delivered, other.delivered),
            appends=_add(self.appends, other.appends),
            published=_add(self.published or {}, other.published or {}) if counted else None,
            unroutable=_add(self.unroutable or {}, other.unroutable or {}) if counted else None,
            broker_publishes=(self.broker_publishes or 0.0) + (other.broker_publishes or 0.0)
            if counted
            else None,
        )

    def __sub__(self, earlier: Counts) -> Counts:
        counted = self.published is not None and earlier.published is not None
        return Counts(
            delivered=_sub(self.delivered, earlier.delivered),
            appends=_sub(self.appends, earlier.appends),
            published=_sub(self.published or {}, earlier.published or {}) if counted else None,
            unroutable=_sub(self.unroutable or {}, earlier.unroutable or {}) if counted else None,
            broker_publishes=(self.broker_publishes or 0.0) - (earlier.broker_publishes or 0.0)
            if counted
            else None,
        )


def _add(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {*a, *b}}


def _sub(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0.0) - b.get(k, 0.0) for k in {*a, *b}}


def parse(text: str) -> Counts:
    """One process's exposition text, reduced to the counters the bench reads."""
    delivered: dict[str, float] = {}
    published: dict[str, float] = {}
    unroutable: dict[str, float] = {}
    appends: dict[str, float] = {}
    broker_publishes: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            kind = labels.get("type", "")
            if name == HANDLED_SAMPLE:
                delivered[kind] = delivered.get(kind, 0.0) + value
            elif name == APPENDS_SAMPLE:
                worker = labels.get("worker", "")
                appends[worker] = appends.get(worker, 0.0) + value
            elif name == f"{PUBLISHED}_total":
                published[kind] = published.get(kind, 0.0) + value
            elif name == f"{UNROUTABLE}_total":
                unroutable[kind] = unroutable.get(kind, 0.0) + value
            elif name == f"{BROKER_PUBLISHES}_total":
                broker_publishes = value
    counted = broker_publishes is not None  # the unlabelled counter is there once installed
    return Counts(
        delivered=delivered,
        appends=appends,
        published=published if counted else None,
        unroutable=unroutable if counted else None,
        broker_publishes=broker_publishes,
    )


def total(parts: Iterable[Counts]) -> Counts:
    out: Counts | None = None
    for part in parts:
        out = part if out is None else out + part
    return out if out is not None else Counts()


def _per(value: float, tasks: int) -> float:
    return round(value / tasks, 2)


def _by_type(values: Mapping[str, float], tasks: int) -> dict[str, float]:
    """Per task by type, the types that occurred, most frequent first."""
    seen = sorted(((v, k) for k, v in values.items() if v > 0), reverse=True)
    return {k: _per(v, tasks) for v, k in seen}


def per_task(delta: Counts | None, tasks: int, events: int | None = None) -> dict[str, Any]:
    """The window's counts divided by the tasks completed in it; None where not measured.

    ``events``: how far the store's last position moved in the window (events recorded).
    """
    if delta is None or tasks <= 0:
        return {name: None for name in PER_TASK_KEYS}
    published, unroutable = delta.published, delta.unroutable
    return {
        "publishes": None if published is None else _per(sum(published.values()), tasks),
        "deliveries": _per(sum(delta.delivered.values()), tasks),
        "appends": _per(sum(delta.appends.values()), tasks),
        "events": None if events is None else _per(events, tasks),
        "unroutable": None if unroutable is None else _per(sum(unroutable.values()), tasks),
        "broker_publishes": None
        if delta.broker_publishes is None
        else _per(delta.broker_publishes, tasks),
        "publishes_by_type": None if published is None else _by_type(published, tasks),
        "deliveries_by_type": _by_type(delta.delivered, tasks),
        "unroutable_by_type": None if unroutable is None else _by_type(unroutable, tasks),
        "appends_by_worker": _by_type(delta.appends, tasks),
    }


PER_TASK_KEYS = (
    "publishes",
    "deliveries",
    "appends",
    "events",
    "unroutable",
    "broker_publishes",
    "publishes_by_type",
    "deliveries_by_type",
    "unroutable_by_type",
    "appends_by_worker",
)


async def _scrape(port: int) -> str:
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        response.raise_for_status()
        return await response.text()


async def snapshot(ports: Iterable[int]) -> Counts | None:
    """Every process's counters added up (this one's too); None if one could not be read."""
    try:
        texts = await asyncio.gather(*(_scrape(port) for port in ports))
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        log.warning("bench.scrape_failed", error=str(exc))
        return None
    texts.append(generate_latest(REGISTRY).decode())
    return total(parse(text) for text in texts)
