"""Scaling signals of the worker queues: observed twice, ``interval`` seconds apart.

Depth and consumers come from a passive declare each time (broker/inspect.py).
The ack rate needs a counter the broker does not give over AMQP, so it comes
from one of two places:

- ``management``: where ``RALLY_MANAGEMENT_URL`` answers, the plugin's own
  ``message_stats`` publish and ack rates;
- ``store`` (otherwise): the event history. Every event a worker appends
  carries the id of the message that caused it and the worker's name in its
  metadata, and positions grow in commit order; so the distinct message ids of
  a worker's events between the two samples' last positions are the messages
  it handled with an effect in the window. No clock is compared: positions
  mark the window.

The store's count is a lower bound: a message that changes nothing is not
recorded (a duplicate, a heartbeat of a live agent, an event the allocator
merely notes), nor is one retried or dead-lettered. For the tasks queue,
whose every command is recorded, it is close to the truth; for the registry
and the allocator it is far below it, which does not matter to their
suggestion (they are single-active). Dead-letter queues have no store source:
their ack rate is null and their publish rate the depth growth alone.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from broker.connection import BrokerConnection
from broker.inspect import (
    ManagementRates,
    ManagementUnavailable,
    QueueStats,
    management_rates,
    management_window,
    queue_stats,
    vhost_of,
)
from broker.topology import Topology
from contracts.shards import SLOTS
from workers.runtime.settings import WORKERS
from workers.scaling import (
    Mode,
    QueueRates,
    QueueSample,
    ScalingPolicy,
    derive_rates,
    suggest_replicas,
)
from workers.store.base import EventStore

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S = 1.0
# the queues that run with x-single-active-consumer (see each worker's service.py)
SINGLE_ACTIVE_WORKERS = frozenset({"registry", "allocator"})
_PAGE = 1000

RateSource = Literal["store", "management"]


@dataclass(frozen=True, slots=True)
class WatchedQueue:
    name: str
    worker: str
    mode: Mode


@dataclass(frozen=True, slots=True)
class QueueSignal:
    queue: WatchedQueue
    sample: QueueSample
    rates: QueueRates
    suggested_replicas: int
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue.name,
            "worker": self.queue.worker,
            "mode": self.queue.mode.value,
            "depth": self.sample.depth,
            "consumers": self.sample.consumers,
            "publish_rate": round(self.rates.publish_rate, 3),
            "ack_rate": None if self.rates.ack_rate is None else round(self.rates.ack_rate, 3),
            "suggested_replicas": self.suggested_replicas,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ScalingReport:
    interval_s: float
    policy: ScalingPolicy
    rate_source: RateSource
    rate_window_s: float
    notes: tuple[str, ...]
    queues: tuple[QueueSignal, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "interval_s": round(self.interval_s, 3),
            "drain_target_s": self.policy.drain_target_s,
            "max_replicas": self.policy.max_replicas,
            "rate_source": self.rate_source,
            "rate_window_s": round(self.rate_window_s, 3),
            "notes": list(self.notes),
            "queues": [q.as_json() for q in self.queues],
        }


def watched_queues(
    topology: Topology, workers: Sequence[str] = WORKERS, *, registry_shards: int = 1
) -> list[WatchedQueue]:
    """Each worker's queue (each registry shard's) and its dead-letter queue."""
    out: list[WatchedQueue] = []
    for worker in workers:
        names = (
            topology.registry_queues(registry_shards)
            if worker == "registry"
            else [topology.worker_queue(worker)]
        )
        mode = Mode.SINGLE_ACTIVE if worker in SINGLE_ACTIVE_WORKERS else Mode.COMPETING
        for name in names:
            out += [
                WatchedQueue(name, worker, mode),
                WatchedQueue(f"{name}.dlq", worker, Mode.DEAD_LETTER),
            ]
    return out


FLEET_INBOXES = 50  # inboxes `rally status` and the dashboard look at: a round trip each


def fleet_queue_names(topology: Topology, present: Iterable[str], shards: int) -> list[str]:
    """What `rally status` and the dashboard look at: every worker queue (each registry
    shard's) and its DLQ, the inboxes of the first :data:`FLEET_INBOXES` agents ``present``
    with their own DLQs (an inbox of an earlier release has one), the DLQ every inbox of this
    release shares and the clients' DLQ. A fleet of thousands shows its agents through
    ``rally agents``, not one look per inbox."""
    names = [q.name for q in watched_queues(topology, WORKERS, registry_shards=shards)]
    inboxes = [topology.inbox_queue(a).name for a in itertools.islice(present, FLEET_INBOXES)]
    own_dlqs = (f"{n}.dlq" for n in inboxes)
    return [*names, *inboxes, *own_dlqs, topology.inbox_dlq, topology.shared_dlq]


async def registry_shard_count(conn: BrokerConnection) -> int:
    """How many registry shards the broker has queues for (shard 0 declares them all).

    Shards are numbered from 0 without gaps, so the first missing queue ends the count: a
    probe per shard plus one, not one per possible shard.
    """
    count = 1
    while count < SLOTS:
        name = conn.topology.registry_queue_name(count)
        (stats,) = await queue_stats(conn, [name])
        if not stats.exists:
            break
        count += 1
    return count


async def handled_by_worker(store: EventStore, after: int, upto: int) -> dict[str, int]:
    """Distinct causing messages of each worker's events at positions in (after, upto]."""
    seen: dict[str, set[str]] = defaultdict(set)
    position = after
    while position < upto:
        page = await store.read_all(position, _PAGE)
        if not page:
            break
        for record in page:
            if record.position > upto:
                break
            worker, message_id = record.metadata.get("worker"), record.metadata.get("message_id")
            if isinstance(worker, str) and isinstance(message_id, str):
                seen[worker].add(message_id)
        position = page[-1].position
    return {worker: len(ids) for worker, ids in seen.items()}


async def sample_scaling(
    conn: BrokerConnection,
    store: EventStore,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    policy: ScalingPolicy | None = None,
    management_url: str | None = None,
) -> ScalingReport:
    """Observe the worker queues twice, ``interval_s`` apart, and suggest replica counts."""
    if not interval_s > 0:
        raise ValueError(f"the sampling interval must be above 0 seconds, got {interval_s}")
    policy = policy or ScalingPolicy()
    queues = watched_queues(conn.topology, registry_shards=await registry_shard_count(conn))
    names = [q.name for q in queues]
    started = time.monotonic()
    first_position = await store.last_position()
    before = await queue_stats(conn, names)
    await asyncio.sleep(interval_s)
    after = await queue_stats(conn, names)
    last_position = await store.last_position()
    elapsed = time.monotonic() - started

    notes: list[str] = []
    managed: Mapping[str, ManagementRates] | None = None
    window = management_window(interval_s)
    if management_url:
        try:
            managed = await management_rates(
                management_url, vhost_of(conn.settings.amqp_url), names, window_s=window
            )
        except ManagementUnavailable as exc:
            log.warning("status.management_unavailable", error=str(exc))
            notes.append(f"{exc}; rates from the store instead")
    handled: Mapping[str, int] = {}
    if managed is None:
        handled = await handled_by_worker(store, first_position, last_position)

    signals: list[QueueSignal] = []
    for queue, old, new in zip(queues, before, after, strict=True):
        if not new.exists:
            continue  # never declared: no worker of this kind has started yet
        sample = _sample(new)
        if managed is not None:
            found = managed.get(queue.name)
            rates = QueueRates(
                publish_rate=found.publish_rate if found else 0.0,
                ack_rate=found.ack_rate if found else 0.0,
            )
        else:
            count = None if queue.mode is Mode.DEAD_LETTER else handled.get(queue.worker, 0)
            rates = derive_rates(_sample(old), sample, count, elapsed)
        suggestion = suggest_replicas(queue.mode, sample, rates, policy)
        signals.append(QueueSignal(queue, sample, rates, suggestion.replicas, suggestion.reason))
    return ScalingReport(
        interval_s=elapsed,
        policy=policy,
        rate_source="store" if managed is None else "management",
        rate_window_s=elapsed if managed is None else float(window),
        notes=tuple(notes),
        queues=tuple(signals),
    )


def _sample(stats: QueueStats) -> QueueSample:
    return QueueSample(depth=stats.messages, consumers=stats.consumers)
