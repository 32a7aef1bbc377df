"""The allocator's view kept current from the store: a snapshot plus the tail.

Start-up loads the latest snapshot (``allocator``) and reads only the events
after its position, so it costs the open work and the tail, not the history's
age. The active replica saves a snapshot every ``SNAPSHOT_EVERY`` events (more in a
large view: ``SNAPSHOT_PER_ENTRY``) or ``SNAPSHOT_S`` seconds (whichever comes first,
only if the view moved) and on a clean stop; a standby reads the tail every
``FOLLOW_S`` so a takeover has only the last few events to read. Streams held at
an unreadable event are tried again at start-up and every ``holds.RETRY_S``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from contracts import ContractError
from workers.allocator.holds import RETRY_S, Held, publish_holds
from workers.allocator.projection import (
    AgentView,
    Holder,
    OpenTask,
    Projection,
    ResourceView,
)
from workers.registry.state import Agent
from workers.runtime import snapshots
from workers.runtime.messages import load_event
from workers.runtime.metrics import PlacementMetrics
from workers.store.base import EventStore, RecordedEvent
from workers.tasks.state import Task

log = structlog.get_logger(__name__)

SNAPSHOT_NAME = "allocator"
SNAPSHOT_EVERY = 5000  # events applied since the last snapshot, at least...
# ...and at least this many per entry of the view (agents and open tasks): saving costs
# about what folding one event per entry costs (10,000 agents: ~0.7 s of CPU), so a fixed
# count made a large fleet's snapshots cost more than the fold itself; with this they
# cost about a quarter of it. A standby follows the store, so a takeover reads the same
# short tail whatever this is; only a cold start reads up to this many events more.
SNAPSHOT_PER_ENTRY = 4
SNAPSHOT_S = 60.0
FOLLOW_S = 0.2  # a standby reads the tail this often
PAGE = 1000
# what a snapshot holds of the view: everything a replay builds (not the decisions'
# own bookkeeping: wait reasons, set-asides)
FIELDS = ("agents", "tasks", "resources", "avoid", "held", "held_tasks")
CODEC = snapshots.Codec([AgentView, Agent, OpenTask, Task, Holder, ResourceView, Held])


def snapshot_state(view: Projection) -> dict[str, Any]:
    return {name: getattr(view, name) for name in FIELDS}


def restore(view: Projection, position: int, state: dict[str, Any]) -> None:
    for name in FIELDS:
        setattr(view, name, state[name])
    view.position = position


class ViewKeeper:
    def __init__(
        self, store: EventStore, view: Projection, metrics: PlacementMetrics, *, replica: str
    ) -> None:
        self.store = store
        self.view = view
        self.metrics = metrics
        self.replica = replica
        self._saved_at = 0  # the position of the last snapshot saved or loaded
        self._saved_time = 0.0
        self._holds_seen: list[tuple[str, int]] = []
        self._holds_tried = 0.0

    async def start(self) -> int:
        """Snapshot + tail; answers how many events the tail had."""
        found = await snapshots.load(self.store, SNAPSHOT_NAME, CODEC)
        if found is not None:
            restore(self.view, *found)
            self._saved_at = self.view.position
            log.info("allocator.snapshot_loaded", position=self.view.position)
        self._saved_time = _now()
        tail = await self.catch_up()
        await self.retry_holds(force=True)
        log.info(
            "allocator.view_ready",
            position=self.view.position,
            tail=tail,
            open_tasks=len(self.view.tasks),
            from_snapshot=found is not None,
        )
        return tail

    async def catch_up(self) -> int:
        applied = 0
        while True:
            page = await self.store.read_all(self.view.position, PAGE)
            self.apply(page)
            applied += len(page)
            if len(page) < PAGE:
                break
        await self._holds_changed()
        return applied

    def apply(self, records: list[RecordedEvent] | tuple[RecordedEvent, ...]) -> None:
        for record in records:
            self.view.apply(record)
            self.metrics.saw(record)

    # ---- snapshots ----
    def snapshot_due(self) -> bool:
        moved = self.view.position - self._saved_at
        if moved <= 0:
            return False
        entries = len(self.view.agents) + len(self.view.tasks)
        every = max(SNAPSHOT_EVERY, SNAPSHOT_PER_ENTRY * entries)
        return moved >= every or _now() - self._saved_time >= SNAPSHOT_S

    async def save(self) -> None:
        """Save the view as of its position (the caller keeps it still meanwhile)."""
        if self.view.position <= self._saved_at:
            return
        position = self.view.position
        await snapshots.save(self.store, SNAPSHOT_NAME, position, CODEC, snapshot_state(self.view))
        self._saved_at, self._saved_time = position, _now()
        log.info("allocator.snapshot_saved", position=position, open_tasks=len(self.view.tasks))

    # ---- held streams ----
    async def retry_holds(self, *, force: bool = False) -> None:
        """Take again each held stream that now reads (an upcaster shipped)."""
        if not self.view.held or (not force and _now() - self._holds_tried < RETRY_S):
            return
        self._holds_tried = _now()
        for stream in list(self.view.held):
            records = await self.store.read(stream)
            try:
                for record in records:
                    load_event(record)
            except (ContractError, TypeError, ValueError):
                continue  # still unreadable: it stays held
            self.view.refold(stream, records)
        await self._holds_changed()

    async def _holds_changed(self) -> None:
        seen = [(h.stream, h.position) for h in self.view.held.values()]
        if seen == self._holds_seen:
            return
        self._holds_seen = seen
        await publish_holds(self.store, self.view, self.replica)


def _now() -> float:
    return asyncio.get_running_loop().time()
