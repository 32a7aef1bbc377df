"""`rally bench allocator`: the allocator's CPU per placed task and per event, without a broker.

What runs is the allocator's own code path, unchanged: its view kept from the store
(``ViewKeeper`` snapshot + tail, the projection's fold), the decision
(``Allocator.run``: lease commands, ended and overdue work, lease settling, placement
through the candidate index) and its one ``append_many`` per decision with the
``AssignTask`` outbox rows, against a real store (a fresh SQLite file, or a throw-away
schema on the PostgreSQL given by ``--store``), plus the snapshots the active replica
saves as the view moves. The fleet's part is played on paper by the domain's own
functions, as ``history_build`` does: N agents join through ``registry.domain.decide``
(``AgentJoined`` in their streams), tasks are submitted through ``decide_submit``
and reported started and succeeded through ``tasks.domain.decide``, appended as the
registry and the task manager record them.

What it does NOT measure: the transport. No broker is involved — no wake-up
deliveries, no relay publishing the outbox rows (they stay in the store), no
``AssignTask`` reaching an agent; the one broker-facing call the allocator makes
directly (a lease notice, none expected here) goes to a stand-in that counts it and
is reported. Decisions are driven back to back, each over the work that arrived
since the last (``--batch`` submits), as coalesced wake-ups would drive them. CPU is
this process's (``time.process_time``, store threads included; PostgreSQL's server
CPU is not), counted only while the allocator works: the bench's own appends of
submits and reports are outside it. ``placements/s`` is placed tasks per allocator
CPU second: the ceiling of one replica given a whole core.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from broker.topology import event_subscribed
from contracts import (
    DEFAULT_MAX_BYTES,
    RegisterAgent,
    ReportTaskStarted,
    ReportTaskSucceeded,
    SubmitTask,
)
from workers.allocator.handlers import Allocator
from workers.registry import domain as registry_domain
from workers.registry import state as registry_state
from workers.runtime.clock import SystemClock
from workers.runtime.messages import new_event
from workers.runtime.settings import WorkerSettings
from workers.store import open_store
from workers.store.base import AppendRequest, BatchEventStore, Metadata, StreamAppend
from workers.store.postgres import split_schema
from workers.store.postgres_schema import quote_ident
from workers.tasks import domain as tasks_domain
from workers.tasks.state import Task, evolve, stream_of
from workers.tasks.submit import Submitter, decide_submit

Progress = Callable[[str], None]
CLIENT = "bench-client"
CHUNK = 1_000  # append requests per transaction when the bench records the fleet's part


@dataclass(frozen=True, slots=True)
class CeilingOptions:
    agents: int = 10_000
    tasks: int = 20_000
    batch: int = 200  # submits between two decisions
    capabilities: int = 4  # capability pool; each agent has ``per_agent`` of them
    per_agent: int = 2
    capacity: int = 4
    hold: int = 2  # a placed task runs this many decisions before it succeeds
    store_url: str | None = None  # None: a fresh SQLite file; postgresql://: a temp schema
    profile: bool = False
    top: int = 25
    seed: int = 17

    def __post_init__(self) -> None:
        if min(self.agents, self.tasks, self.batch, self.capacity, self.per_agent) < 1:
            raise ValueError("--agents, --tasks, --batch and --capacity must be at least 1")
        if self.per_agent > self.capabilities:
            raise ValueError("an agent cannot have more capabilities than the pool holds")


class _NoTransport:
    """Where the allocator's direct notices would go to the broker: counted, never sent."""

    user_id = "bench"

    def __init__(self) -> None:
        self.notices = 0

    async def send(self, *args: object, **kwargs: object) -> None:
        self.notices += 1


@dataclass
class _Meter:
    """Allocator CPU and wall time by phase; a cProfile over the same windows if asked."""

    profiler: cProfile.Profile | None
    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    decisions: list[float] = field(default_factory=list)  # wall ms of each fold + decision

    @contextlib.contextmanager
    def phase(self, name: str) -> Any:
        if self.profiler is not None:
            self.profiler.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            if self.profiler is not None:
                self.profiler.disable()


def _meta(worker: str, sender: str) -> tuple[Metadata, str]:
    message_id = str(uuid.uuid4())
    meta = Metadata(
        message_id=message_id,
        causation_id=message_id,
        correlation_id=message_id,
        sender=sender,
        worker=worker,
        replica="0",
    )
    return meta, message_id


async def _append(store: BatchEventStore, requests: list[AppendRequest]) -> None:
    for start in range(0, len(requests), CHUNK):
        for outcome in await store.append_batch(requests[start : start + CHUNK]):
            if isinstance(outcome, Exception):
                raise RuntimeError(f"the bench conflicted with itself: {outcome}")


def _caps(options: CeilingOptions) -> tuple[str, ...]:
    return tuple(f"cap-{i}" for i in range(options.capabilities))


async def _join(store: BatchEventStore, options: CeilingOptions) -> None:
    """N agents registered as the registry records them: one ``AgentJoined`` stream each."""
    caps, now, requests = _caps(options), datetime.now(UTC), []
    for i in range(options.agents):
        agent_id = f"bench-agent-{i:05d}"
        mine = tuple(caps[(i + k) % len(caps)] for k in range(options.per_agent))
        cmd = RegisterAgent(
            agent_id=agent_id,
            capabilities=mine,
            capacity=options.capacity,
            software_version="bench",
            heartbeat_interval_s=5.0,
        )
        events = registry_domain.decide(registry_state.Agent(agent_id), cmd, now)
        meta, message_id = _meta("registry", agent_id)
        append = StreamAppend(registry_state.stream_of(agent_id), 0, [new_event(e) for e in events])
        requests.append(AppendRequest([append], meta, message_id))
    await _append(store, requests)


def _submits(options: CeilingOptions, rng: random.Random, count: int) -> list[AppendRequest]:
    """``count`` tasks recorded as the task manager records a submit."""
    caps, by, now, requests = _caps(options), Submitter("guest", sender=CLIENT), _now(), []
    for _ in range(count):
        task_id = uuid.uuid4()
        cmd = SubmitTask(
            task_id=task_id,
            capability=rng.choice(caps),
            payload={"n": rng.randint(0, 1_000)},
            priority=rng.choice((0, 0, 0, 1, 5)),
        )
        decision = decide_submit(cmd, by, Task(task_id), {}, None, now, DEFAULT_MAX_BYTES)
        meta, message_id = _meta("tasks", CLIENT)
        appends = [
            StreamAppend(a.stream, a.expected_version, [new_event(e) for e in a.events])
            for a in decision.appends
        ]
        requests.append(AppendRequest(appends, meta, message_id))
    return requests


def _reports(tasks: list[Task]) -> list[AppendRequest]:
    """Each task's agent reports it started, then succeeded, as the task manager records."""
    requests = []
    for task in tasks:
        agent, attempt, token = task.agent_id, task.attempt, task.fencing_token
        assert agent is not None
        assert token is not None
        commands: list[tasks_domain.Command] = [
            ReportTaskStarted(
                task_id=task.task_id, agent_id=agent, attempt=attempt, fencing_token=token
            ),
            ReportTaskSucceeded(
                task_id=task.task_id,
                agent_id=agent,
                attempt=attempt,
                fencing_token=token,
                result={"ok": True},
            ),
        ]
        for cmd in commands:
            events = tasks_domain.decide(task, cmd, _now())
            meta, message_id = _meta("tasks", agent)
            stream = StreamAppend(
                stream_of(task.task_id), task.version, list(map(new_event, events))
            )
            requests.append(AppendRequest([stream], meta, message_id))
            for event in events:
                task = evolve(task, event)
    return requests


def _now() -> datetime:
    return datetime.now(UTC)


@contextlib.asynccontextmanager
async def scratch(store_url: str | None) -> AsyncIterator[Any]:
    """A fresh store: a SQLite file in a temp directory, or a temp schema on PostgreSQL."""
    if store_url is not None and store_url.startswith(("postgresql://", "postgres://")):
        dsn, _ = split_schema(store_url)  # never the caller's own schema: it is dropped after
        schema = f"rally_alloc_{uuid.uuid4().hex[:8]}"
        store = open_store(
            f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}", publishes=event_subscribed
        )
        try:
            await store.start()
            yield store
        finally:
            await store.close()
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
            finally:
                await conn.close()
        return
    with tempfile.TemporaryDirectory(prefix="rally-alloc-") as tmp:
        store = open_store(str(Path(tmp) / "rally.db"), publishes=event_subscribed)
        try:
            await store.start()
            yield store
        finally:
            await store.close()


async def run_ceiling(options: CeilingOptions, progress: Progress) -> dict[str, Any]:
    async with scratch(options.store_url) as store:
        return await _measure(store, options, progress)


async def _measure(store: Any, options: CeilingOptions, progress: Progress) -> dict[str, Any]:
    rng = random.Random(options.seed)
    progress(f"joining {options.agents:,} agents")
    await _join(store, options)
    transport = _NoTransport()
    allocator = Allocator(
        store,
        transport,  # type: ignore[arg-type]
        SystemClock(),
        WorkerSettings(),
        replica="bench",
    )
    meter = _Meter(cProfile.Profile() if options.profile else None)
    with meter.phase("start"):
        await allocator.keeper.start()  # what start() does before following: snapshot + tail
    start_events = allocator.view.position
    progress(f"{start_events:,} agent events folded at start; placing {options.tasks:,} tasks")
    submitted, placed, folded = 0, 0, 0
    running: list[list[UUID]] = []  # placed tasks, by the decision that placed them
    waiting: set[UUID] = set()
    while submitted < options.tasks or waiting or any(running):
        count = min(options.batch, options.tasks - submitted)
        requests = _submits(options, rng, count)
        waiting |= {UUID(r.appends[0].stream.removeprefix("task-")) for r in requests}
        submitted += count
        done = running.pop(0) if len(running) >= options.hold or not (count or waiting) else []
        finished = [allocator.view.tasks[t].task for t in done if t in allocator.view.tasks]
        await _append(store, requests + _reports(finished))
        before = allocator.view.position
        wall = time.perf_counter()
        with meter.phase("fold"):
            await allocator.catch_up()  # the wake-up's read of the store
        folded += allocator.view.position - before
        with meter.phase("decide"):
            await allocator.run([])
        meter.decisions.append((time.perf_counter() - wall) * 1000)
        with meter.phase("snapshot"):  # what the active replica's follower does as it moves
            if allocator.keeper.snapshot_due():
                await allocator.keeper.save()
        now_placed = [t for t in waiting if _assigned(allocator, t)]
        waiting -= set(now_placed)
        placed += len(now_placed)
        running.append(now_placed)
        if not count and not now_placed and waiting and not any(running):
            break  # what is left cannot be placed (no free slot): stop, and say so
        if len(meter.decisions) % 20 == 0:
            progress(f"{placed:,} placed, {len(waiting):,} waiting")
    await allocator.release()
    return _report(options, meter, placed, folded, start_events, len(waiting), transport.notices)


def _assigned(allocator: Allocator, task_id: UUID) -> bool:
    open_task = allocator.view.tasks.get(task_id)
    return open_task is not None and open_task.state != "pending"


def _report(
    options: CeilingOptions,
    meter: _Meter,
    placed: int,
    folded: int,
    start_events: int,
    unplaced: int,
    notices: int,
) -> dict[str, Any]:
    cpu = {k: round(v, 3) for k, v in meter.cpu.items()}
    working = sum(v for k, v in meter.cpu.items() if k != "start")
    ordered = sorted(meter.decisions)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else 0.0

    report: dict[str, Any] = {
        "agents": options.agents,
        "tasks": options.tasks,
        "batch": options.batch,
        "capabilities": options.capabilities,
        "store": "postgresql" if (options.store_url or "").startswith("postgres") else "sqlite",
        "placed": placed,
        "unplaced": unplaced,
        "decisions": len(meter.decisions),
        "events_folded": folded,
        "cpu_s": cpu,
        "cpu_ms_per_placed_task": round(working * 1000 / placed, 3) if placed else None,
        "cpu_us_per_event_folded": round(meter.cpu["fold"] * 1e6 / folded, 1) if folded else None,
        "cpu_us_per_agent_at_start": round(meter.cpu["start"] * 1e6 / max(start_events, 1), 1),
        "placements_per_cpu_s": round(placed / working, 1) if working else None,
        "decision_wall_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
        "direct_notices": notices,
        "transport": "not measured (no broker: outbox rows stay in the store)",
    }
    if meter.profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(meter.profiler, stream=out).sort_stats("tottime")
        stats.print_stats(options.top)
        report["profile"] = out.getvalue()
    return report


def format_ceiling(report: dict[str, Any]) -> str:
    cpu = report["cpu_s"]
    lines = [
        f"allocator ceiling: {report['agents']:,} agents, {report['tasks']:,} tasks "
        f"({report['store']}, {report['batch']} submits a decision, "
        f"{report['capabilities']} capabilities)",
        f"  placed                  {report['placed']:,} in {report['decisions']:,} decisions"
        f" ({report['unplaced']:,} left unplaced)",
        f"  placements/s per core   {report['placements_per_cpu_s']}",
        f"  CPU ms per placed task  {report['cpu_ms_per_placed_task']}",
        f"  CPU us per event folded {report['cpu_us_per_event_folded']}"
        f" ({report['events_folded']:,} events)",
        f"  CPU us per agent, start {report['cpu_us_per_agent_at_start']}",
        f"  CPU s by phase          fold {cpu.get('fold')}, decide {cpu.get('decide')}, "
        f"snapshot {cpu.get('snapshot')}, start {cpu.get('start')}",
        f"  fold+decide wall ms     p50 {report['decision_wall_ms']['p50']}, "
        f"p99 {report['decision_wall_ms']['p99']}, max {report['decision_wall_ms']['max']}",
        f"  transport               {report['transport']}; "
        f"direct notices {report['direct_notices']}",
    ]
    if "profile" in report:
        lines += ["", report["profile"]]
    return "\n".join(lines)
