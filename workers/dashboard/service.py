"""The dashboard process's state and the loops that keep it current.

Three loops, each on its own clock so a slow broker never holds up the store:

- the history: the tasks and agents read models' runner caught up (the tail
  since the last catch-up, by this process or any other), then the few indexed
  queries the page needs (workers/dashboard/fleet.py) into a :class:`FleetView`;
- the queues: ``queue_stats`` (one passive declare per queue), kept until the
  next refresh, plus the heartbeat tap once the broker answers;
- the dead letters: counts and the newest few from the archive.

Requests only read what these loops left in memory, except a task's timeline,
a page of the task list and a dead letter's record, which are read on demand
(one stream, one indexed page, one row). Nothing here writes events, the
archive or the broker's queues; the read models' rows and checkpoints are
the only writes, as any reader catching them up makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog

from broker.connection import BrokerConnection, redact
from broker.errors import BrokerError, BrokerUnavailable
from broker.inspect import queue_stats
from broker.settings import BrokerSettings
from workers.dashboard import data
from workers.dashboard.fleet import SCHEMA, EndedSince, FleetView, read_view
from workers.dashboard.heartbeats import HeartbeatBook, HeartbeatTap
from workers.dashboard.throughput import Throughput
from workers.dlq.archive import ArchiveError, DeadLetterArchive, open_archive
from workers.dlq.model import Query
from workers.dlq.views import letter_json
from workers.queue_signals import fleet_queue_names, registry_shard_count
from workers.readmodels import Projection, ProjectionRunner, database_for
from workers.readmodels.agents import AgentsProjection
from workers.readmodels.task_queries import TaskFilter, list_tasks
from workers.readmodels.tasks import TasksProjection
from workers.runtime.clock import Clock, SystemClock
from workers.store import EventStore, StoreError, open_store
from workers.tasks.timeline import read_timeline, task_row

log = structlog.get_logger(__name__)

PAGE = 5000
RECENT_DEAD_LETTERS = 100
BROKER_CONNECT_TIMEOUT_S = 5.0
TAP_RETRY_S = 30.0
BROKER_RETRY_MAX_S = 30.0
# a passive declare per queue: past a few hundred queues, look less often rather than flood
QUEUES_PER_SECOND = 500


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    store_url: str
    broker: BrokerSettings
    refresh_s: float = 1.0
    page: int = PAGE  # records per read-model transaction while catching up


class Dashboard:
    def __init__(self, config: DashboardConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.view = FleetView()
        self.throughput = Throughput()
        self.beats = HeartbeatBook()
        self.queues = data.QueueSnapshot()
        self.dead_letters = data.DeadLetterSnapshot()
        self.store: EventStore = open_store(config.store_url)
        self.archive: DeadLetterArchive = open_archive(config.store_url)
        self.db = database_for(self.store)
        self._runner: ProjectionRunner | None = None
        self._ended = EndedSince()
        self.topology = BrokerConnection(config.broker, role="dashboard").topology
        self.behind = False
        self.store_error: str | None = None
        self._conn: BrokerConnection | None = None
        self._tap: HeartbeatTap | None = None
        self._tap_retry_at = 0.0
        self._connect_failures = 0
        self._connect_retry_at = 0.0
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # ---- lifecycle ----
    async def start(self) -> Dashboard:
        """Open the store and the archive (errors here are the caller's to report), read the
        first stretch of history, then keep refreshing in the background."""
        await self.store.start()
        await self.archive.start()
        await self.catch_up()
        self._loops = [
            asyncio.create_task(
                self._every(self._history_interval, self.catch_up, wait_first=True),
                name="history",
            ),
            asyncio.create_task(
                self._every(self._queue_interval, self.refresh_queues), name="queues"
            ),
            asyncio.create_task(
                self._every(lambda: self.config.refresh_s, self.refresh_dead_letters),
                name="dead-letters",
            ),
        ]
        return self

    async def stop(self) -> None:
        # the loops finish the step in hand rather than being cancelled in it: a broker connect
        # cancelled half-way leaves aio-pika reconnecting forever, with nothing left to close it
        self._stopping.set()
        if self._loops:
            _, late = await asyncio.wait(self._loops, timeout=BROKER_CONNECT_TIMEOUT_S + 5)
            for loop in late:
                loop.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._loops = []
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = self._tap = None
        await self.archive.close()
        await self.store.close()

    async def _every(
        self,
        interval: Callable[[], float],
        step: Callable[[], Awaitable[None]],
        *,
        wait_first: bool = False,
    ) -> None:
        if wait_first and await self._stopped_within(interval()):
            return
        while True:
            try:
                await step()
            except Exception:  # a view goes stale; the dashboard keeps serving the others
                log.exception("dashboard.refresh_failed", step=step.__name__)
            if await self._stopped_within(interval()):
                return

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait ``seconds`` (0 still lets others run); True as soon as ``stop`` was called."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def _history_interval(self) -> float:
        return self.config.refresh_s

    def _queue_interval(self) -> float:
        count = len(self.view.agents) * 2 + 7
        return max(self.config.refresh_s, count / QUEUES_PER_SECOND)

    # ---- the history ----
    async def _runner_started(self) -> ProjectionRunner:
        if self._runner is None:
            projections: list[Projection] = [
                TasksProjection(self.store),
                AgentsProjection(self.store),
            ]
            runner = ProjectionRunner(self.store, projections, db=self.db, page=self.config.page)
            await runner.start()
            await self.db.ddl(SCHEMA)
            self._runner = runner
        return self._runner

    async def catch_up(self) -> None:
        """Catch the read models up to the store's last position, then read the page's views."""
        try:
            runner = await self._runner_started()
            position = await runner.catch_up()
            for ended_at in await self._ended(self.db, position):
                self.throughput.add(ended_at)
            self.view = await read_view(self.db, position, runner.health())
            self.store_error = None
        except StoreError as exc:
            self.store_error = str(exc)
            log.warning("dashboard.store_unavailable", error=str(exc))

    # ---- the broker ----
    async def _broker(self) -> BrokerConnection:
        if self._conn is None:
            if time.monotonic() < self._connect_retry_at:
                raise BrokerUnavailable(self.queues.error or "the broker did not answer")
            try:
                self._conn = await BrokerConnection(self.config.broker, role="dashboard").connect(
                    timeout=BROKER_CONNECT_TIMEOUT_S
                )
            except BrokerUnavailable:
                # back off: each failed attempt is a line in aiormq's log and a connect time-out
                self._connect_failures += 1
                wait = min(BROKER_RETRY_MAX_S, 2.0**self._connect_failures)
                self._connect_retry_at = time.monotonic() + wait
                raise
            self._connect_failures = 0
        if self._tap is None and time.monotonic() >= self._tap_retry_at:
            try:
                self._tap = await HeartbeatTap(self._conn, self.beats, self.clock).start()
            except Exception as exc:  # no commands exchange yet (no fleet started), or no right
                self._tap_retry_at = time.monotonic() + TAP_RETRY_S
                log.warning("dashboard.heartbeat_tap_unavailable", error=str(exc))
        return self._conn

    async def refresh_queues(self) -> None:
        present = (line.agent_id for line in self.view.agents if line.status != "left")
        try:
            conn = await self._broker()
            names = fleet_queue_names(self.topology, present, await registry_shard_count(conn))
            stats = await queue_stats(conn, names)
        except BrokerError as exc:
            self.queues = data.QueueSnapshot(self.queues.as_of, self.queues.stats, str(exc))
            return
        except Exception as exc:  # the connection dropped mid-way: it reconnects by itself
            message = f"queue stats unavailable ({type(exc).__name__}: {exc})"
            self.queues = data.QueueSnapshot(self.queues.as_of, self.queues.stats, message)
            return
        self.queues = data.QueueSnapshot(self.clock.now(), tuple(stats))

    # ---- the dead letters ----
    async def refresh_dead_letters(self) -> None:
        try:
            counts = await self.archive.counts(("dead",))
            recent = await self.archive.find(Query(statuses=("dead",), limit=RECENT_DEAD_LETTERS))
        except ArchiveError as exc:
            self.dead_letters = data.DeadLetterSnapshot(
                self.dead_letters.as_of,
                self.dead_letters.counts,
                self.dead_letters.recent,
                str(exc),
            )
            return
        self.dead_letters = data.DeadLetterSnapshot(self.clock.now(), counts, tuple(recent))

    # ---- reads for the API ----
    def overview(self) -> dict[str, Any]:
        return data.overview(
            now=self.clock.now(),
            namespace=self.topology.namespace,
            refresh_s=self.config.refresh_s,
            store=data.StoreState(
                redact(self.config.store_url),
                self.view.position,
                self.behind,
                self.store_error,
            ),
            view=self.view,
            throughput=self.throughput,
            beats=self.beats,
            queues=self.queues,
            dead_letters=self.dead_letters,
            topology=self.topology,
        )

    async def tasks(self, state: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        """A page of the task list, newest submitted first (``BadCursor`` passes through)."""
        page = await list_tasks(self.db, TaskFilter(state=state), limit=limit, cursor=cursor)
        return {
            "tasks": [data.task_json(row) for row in page.rows],
            "next_cursor": page.next_cursor,
        }

    async def task(self, task_id: UUID) -> dict[str, Any] | None:
        """What `rally task show --json` prints, or None when the history has no such task."""
        timeline = await read_timeline(self.store, task_id)
        if not timeline.entries:
            return None
        return {
            **task_row(timeline.task),
            "timeline": timeline.entries,
            "incomplete": timeline.incomplete,
            "unreadable_events": timeline.unreadable,
        }

    async def dead_letter(self, letter_id: str) -> dict[str, Any]:
        """What `rally dlq show --json` prints; NotFound / AmbiguousId pass through."""
        return letter_json(await self.archive.get(letter_id))
