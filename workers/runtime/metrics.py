"""The workers' metrics: store append latency, placement latency, and gauges of their views.

Message counters and queue gauges come from ``broker.metrics`` (every consumer
has them); this module adds what only workers know:

- ``rally_store_append_seconds``: every append a handler makes, timed around
  the store the service was given (:class:`TimedStore`, wrapped by the runner).
- ``rally_placement_seconds``: from the moment a task could be placed (submitted
  ready, dependencies done, put back to pending) to its ``TaskAssigned``, both
  times as the store recorded them; observed by the allocator replica that
  placed it (:class:`PlacementMetrics`, fed the records the allocator reads).
- ``rally_tasks``, ``rally_agents``, ``rally_resource_*``: read at scrape time
  from the projections the active allocator and registry already hold. A
  standby replica reports none: its view is not kept current.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter, Histogram

from broker.metrics import LABELS, REGISTRY, Exposure, Sample, ScrapeGauges, Source, expose
from contracts import (
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskReady,
    TaskRequeued,
    TaskSubmitted,
    TaskSucceeded,
    lookup,
)
from workers.registry.state import STATUSES as AGENT_STATES
from workers.registry.state import Agent
from workers.runtime.context import ServiceContext
from workers.store.base import (
    NO_METADATA,
    AppendResult,
    EventStore,
    Metadata,
    OutboxMessage,
    RecordedEvent,
    StreamAppend,
)
from workers.store.common import StoreFront
from workers.store.errors import ConcurrencyError

if TYPE_CHECKING:
    from workers.runtime.services import Running

TASK_STATES = ("pending", "assigned", "running", "failed", "succeeded", "cancelled", "dead")
# the state each ending leaves a task in (as workers/tasks/state.py folds it)
ENDED = {TaskSucceeded: "succeeded", TaskCancelled: "cancelled", TaskDead: "dead"}
# from these a task may be placed: a submit (a task waiting on dependencies is placeable
# again at its TaskReady, which comes later and restarts the clock), readiness, a requeue
PLACEABLE = (TaskSubmitted, TaskReady, TaskRequeued)

STORE_APPEND_SECONDS = Histogram(
    "rally_store_append_seconds",
    "Time one append took as a handler saw it (group commit included).",
    LABELS,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
STORE_CONFLICTS = Counter(
    "rally_store_append_conflicts",
    "Appends refused because another writer moved the stream first (decided again).",
    LABELS,
    registry=REGISTRY,
)
PLACEMENT_SECONDS = Histogram(
    "rally_placement_seconds",
    "From a task becoming placeable (ready, or back to pending) to its assignment.",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
    registry=REGISTRY,
)
WORKER_GAUGES = ScrapeGauges(
    {
        "rally_tasks": ("Tasks by state (the active allocator's view).", (*LABELS, "state")),
        "rally_agents": ("Agents by state (the active registry's view).", (*LABELS, "state")),
        "rally_resource_capacity": ("Units of a resource.", (*LABELS, "resource")),
        "rally_resource_leases": ("Leases held on a resource.", (*LABELS, "resource")),
        "rally_resource_utilisation_ratio": (
            "Leases held over capacity, per resource (0 when it has no capacity).",
            (*LABELS, "resource"),
        ),
    }
)


# ---- the store, timed ----


class TimedStore(StoreFront):
    """An ``EventStore`` that times every append of the store it wraps; the rest passes through."""

    def __init__(self, store: EventStore, *, worker: str, replica: str) -> None:
        self.store = store
        self._seconds = STORE_APPEND_SECONDS.labels(worker, replica)
        self._conflicts = STORE_CONFLICTS.labels(worker, replica)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)  # leases and whatever else the wrapped store offers

    async def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        metadata: Metadata = NO_METADATA,
        idempotency_key: str | None = None,
        outbox: Sequence[OutboxMessage] = (),
        cancel_timers_of: Sequence[str] = (),
    ) -> AppendResult:
        started = time.perf_counter()
        try:
            return await self.store.append_many(
                appends,
                metadata=metadata,
                idempotency_key=idempotency_key,
                outbox=outbox,
                cancel_timers_of=cancel_timers_of,
            )
        except ConcurrencyError:
            self._conflicts.inc()
            raise
        finally:
            self._seconds.observe(time.perf_counter() - started)

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()


def timed(ctx: ServiceContext, worker: str) -> ServiceContext:
    """The service context with its store timed under this worker's labels."""
    store = TimedStore(ctx.store, worker=worker, replica=ctx.replica)
    return dataclasses.replace(ctx, store=store)


# ---- placement latency, and the tasks that ended ----


class PlacementMetrics:
    """Fed every record the allocator reads; times the placements this allocator made.

    Keeps, per open task stream, when it last became placeable (the record's
    time); on a ``TaskAssigned`` this allocator appended (``placed``), observes
    the gap. Ended tasks are counted by state, for ``rally_tasks``. Only the
    record's contract class (from the codec's registry) and stream are read:
    the allocator's hot path validates no payload twice for a metric.
    """

    def __init__(self, replica: str, *, worker: str = "allocator") -> None:
        self._seconds = PLACEMENT_SECONDS.labels(worker, replica)
        self.placeable_since: dict[str, datetime] = {}  # task stream → time
        self.ended: Tally[str] = Tally()
        self._mine: set[str] = set()

    def saw(self, record: RecordedEvent) -> None:
        kind = lookup(record.type)
        if kind is None:
            return
        stream = record.stream
        if issubclass(kind, PLACEABLE):
            self.placeable_since[stream] = record.recorded_at
        elif issubclass(kind, TaskAssigned):
            since = self.placeable_since.pop(stream, None)
            if stream in self._mine:
                self._mine.discard(stream)
                if since is not None:
                    self._seconds.observe(max(0.0, (record.recorded_at - since).total_seconds()))
        elif kind in ENDED:
            self.placeable_since.pop(stream, None)
            self.ended[ENDED[kind]] += 1

    def placed(self, appends: Mapping[str, tuple[int, Sequence[Any]]]) -> None:
        """These appends (a committed plan, by stream) came from this allocator: time their
        assignments."""
        for stream, (_, events) in appends.items():
            if any(isinstance(event, TaskAssigned) for event in events):
                self._mine.add(stream)


# ---- gauges from the views ----
# The views are described by what the gauges read, so this module imports no worker
# (the allocator imports PlacementMetrics from here).


class _Stated(Protocol):
    @property
    def state(self) -> str | None: ...


class _Resource(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def holders(self) -> Mapping[Any, Any]: ...


class _AllocatorView(Protocol):
    @property
    def tasks(self) -> Mapping[Any, _Stated]: ...
    @property
    def resources(self) -> Mapping[str, _Resource]: ...


class AllocatorLike(Protocol):
    """What ``rally_tasks`` and ``rally_resource_*`` read of an allocator replica."""

    @property
    def active(self) -> bool: ...
    @property
    def replica(self) -> str: ...
    @property
    def view(self) -> _AllocatorView: ...
    @property
    def placement_metrics(self) -> PlacementMetrics: ...


class RegistryLike(Protocol):
    """What ``rally_agents`` reads of a registry replica: its agents, by the one agent fold."""

    @property
    def active(self) -> bool: ...
    @property
    def replica(self) -> str: ...
    @property
    def agents(self) -> Mapping[str, Agent]: ...
    def owns(self, agent_id: str) -> bool: ...


def allocator_samples(allocator: AllocatorLike) -> Iterator[Sample]:
    if not allocator.active:
        return
    labels = ("allocator", allocator.replica)
    counts: Tally[str] = Tally(task.state for task in allocator.view.tasks.values() if task.state)
    counts.update(allocator.placement_metrics.ended)
    for state in TASK_STATES:
        yield "rally_tasks", (*labels, state), float(counts[state])
    for view in list(allocator.view.resources.values()):
        held = len(view.holders)
        yield "rally_resource_capacity", (*labels, view.name), float(view.capacity)
        yield "rally_resource_leases", (*labels, view.name), float(held)
        ratio = held / view.capacity if view.capacity > 0 else 0.0
        yield "rally_resource_utilisation_ratio", (*labels, view.name), ratio


def registry_samples(registry: RegistryLike) -> Iterator[Sample]:
    """The active replica's agents by state: a registry shard's own agents only, so the sum
    over the shards' active replicas is the fleet."""
    if not registry.active:
        return
    agents = list(registry.agents.values())
    counts: Tally[str] = Tally(a.status for a in agents if registry.owns(a.agent_id))
    for state in AGENT_STATES:
        yield "rally_agents", ("registry", registry.replica, state), float(counts[state])


def _sources(services: Iterable[object]) -> Iterator[Source]:
    """The gauge sources among the running services: each allocator's and registry's view."""
    for service in services:
        allocator: AllocatorLike | None = getattr(service, "allocator", None)
        if allocator is not None:
            yield functools.partial(allocator_samples, allocator)
        registry: RegistryLike | None = getattr(service, "registry", None)
        if registry is not None:
            yield functools.partial(registry_samples, registry)


@contextlib.asynccontextmanager
async def expose_worker(
    running: Running, port: int | None, *, host: str | None = None
) -> AsyncIterator[Exposure]:
    """Serve this replica's metrics on ``port`` (None: not at all) while the block runs."""
    exposure = Exposure()
    try:
        if port is not None:
            consumers = []
            for service in running.services.values():
                consumer = getattr(service, "consumer", None)
                if consumer is not None:
                    consumers.append(consumer)
            for source in _sources(running.services.values()):
                exposure.on_close(WORKER_GAUGES.attach(source))
            await expose(exposure, port, running.conn, consumers, host=host)
        yield exposure
    finally:
        await exposure.close()
