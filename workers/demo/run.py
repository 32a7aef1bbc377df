"""Run the demo: workers, agents, a workload with failures, live progress, a verdict.

The verdict comes from the event history: every task must reach the state the
scenario expects, and the history must keep every promise `history_check`
checks (one terminal state each, capacities, re-placement after the crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.publisher import Outgoing, Publisher
from broker.settings import BrokerSettings
from contracts import (
    AgentJoined,
    AgentLeft,
    AgentLost,
    Backoff,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskOutcome,
    TaskRequeued,
    TaskSucceeded,
)
from sdk import Client, TaskHandle
from workers.demo.fleet import Fleet
from workers.demo.scenario import GPU, GPU_CAPACITY, Scenario, build
from workers.demo.where import Explore, rally_program, run_store_url
from workers.dlq.archive import open_archive
from workers.dlq.directory import DlqDirectory, store_agent_ids
from workers.dlq.model import STATUSES, Query
from workers.dlq.mover import DeadLetterMover
from workers.history_check import HistoryReport, check_history
from workers.runtime.messages import load_event
from workers.store import open_store
from workers.store.base import EventStore, RecordedEvent

HEARTBEAT_S = 1.0
FAST_BACKOFF = Backoff(initial_s=0.05, factor=2.0, max_s=0.5)
BAD_MESSAGES: tuple[tuple[str, bytes], ...] = (
    ("tasks.SubmitTask", b"{this is not JSON"),
    (
        "tasks.SubmitTask",
        b'{"type": "SubmitTask", "version": 1, "correlation_id": '
        b'"00000000-0000-0000-0000-000000000001", "sender": "demo", '
        b'"payload": {"priority": "high"}}',
    ),
    ("tasks.TeleportTask", b'{"type": "TeleportTask", "version": 1}'),
)


@dataclass
class DemoOptions:
    replicas: int = 2
    agents: int = 12
    tasks: int = 1000
    seed: int = 7
    timeout_s: float = 180.0
    amqp_url: str | None = None


@dataclass
class Progress:
    """What the live view shows; updated by the run, read by the renderer."""

    total: int
    done: int = 0
    states: Counter[str] = field(default_factory=Counter)
    agents_alive: int = 0
    agent_load: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    phase: str = "starting"

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started_at
        return self.done / elapsed if elapsed > 0 else 0.0


@dataclass
class DemoResult:
    summary: dict[str, Any]
    report: HistoryReport
    mismatches: list[str]
    ok: bool


async def run_demo(options: DemoOptions, on_progress: Callable[[Progress], None]) -> DemoResult:
    scenario = build(options.agents, options.tasks, options.seed)
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    run_dir = Path("var") / "demo" / namespace
    run_dir.mkdir(parents=True, exist_ok=True)
    store_url = run_store_url(os.environ, run_dir, namespace)
    env = {
        **os.environ,
        "RALLY_NAMESPACE": namespace,
        "RALLY_STORE_URL": store_url,
        "RALLY_RESOURCES": f"{GPU}={GPU_CAPACITY}",
        "RALLY_HEARTBEAT_S": str(HEARTBEAT_S),
        "RALLY_LOG_FORMAT": "json",
        "RALLY_LOG_LEVEL": os.environ.get("RALLY_LOG_LEVEL", "WARNING"),
    }
    if options.amqp_url:
        env["RALLY_AMQP_URL"] = options.amqp_url
    settings = BrokerSettings.from_env(env)
    conn = await BrokerConnection(settings, role="demo").connect()
    await declare_topology(conn)
    store = open_store(store_url)
    await store.start()
    fleet = Fleet(env, run_dir)
    progress = Progress(total=len(scenario.tasks))
    client = Client(settings=settings)
    try:
        fleet.start_workers(options.replicas)
        victim = [a for a in scenario.agents if a.agent_id == scenario.victim]
        fleet.start_agents("victim", victim, HEARTBEAT_S)
        fleet.start_agents(
            "fleet", [a for a in scenario.agents if a.agent_id != scenario.victim], HEARTBEAT_S
        )
        await client.connect()
        progress.phase = "waiting for agents to join"
        watcher = asyncio.create_task(_watch(store, progress, on_progress))
        await _wait_for(lambda: progress.agents_alive >= len(scenario.agents), 60, fleet)
        progress.started_at = time.monotonic()
        progress.phase = "running"
        publisher = await Publisher(conn, sender="demo-mischief").start()
        for routing_key, body in BAD_MESSAGES:
            await publisher.publish_raw(
                Outgoing(
                    conn.topology.commands,
                    routing_key,
                    body,
                    message_id=f"bad-{uuid.uuid4().hex[:8]}",
                )
            )
        handles = await _submit(client, scenario)
        poison = str(handles["poison"].task_id) if "poison" in handles else None
        outcomes = await _await_outcomes(handles, scenario, progress, fleet, options.timeout_s)
        progress.phase = "checking the history"
        watcher.cancel()
        history = await _read_history(store)
        report = check_history(history)
        dead_letters = await _archive_dead_letters(conn, store, store_url, scenario)
        mismatches = [
            f"{key}: expected {scenario_task.expected}, got {outcomes.get(key, 'nothing')}"
            for key, scenario_task in ((t.key, t) for t in scenario.tasks)
            if outcomes.get(key) != scenario_task.expected
        ]
        elapsed = time.monotonic() - progress.started_at
        states = Counter(outcomes.values())
        summary = {
            "namespace": namespace,
            "store_url": store_url,
            "replicas": options.replicas,
            "agents": len(scenario.agents),
            "killed_agent": scenario.victim,
            "tasks_submitted": len(scenario.tasks),
            "succeeded": states["succeeded"],
            "failed": report.failed_attempts,
            "cancelled": states["cancelled"],
            "dead": states["dead"],
            "reassigned": report.reassigned,
            "dead_letters": dead_letters,
            "history_events": len(history),
            "history_violations": report.violations[:20],
            "elapsed_s": round(elapsed, 2),
            "tasks_per_s": round(len(scenario.tasks) / elapsed, 1) if elapsed else 0.0,
            "explore": Explore(
                store_url, namespace, poison, rally_program(sys.argv[0], shutil.which("rally"))
            ).commands(),
        }
        ok = not mismatches and report.ok and dead_letters >= len(BAD_MESSAGES)
        return DemoResult(summary, report, mismatches, ok)
    finally:
        await client.close()
        fleet.close()
        await store.close()
        await _remove_namespace(conn, scenario)
        await conn.close()


async def _wait_for(predicate: Callable[[], bool], timeout: float, fleet: Fleet) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        crashed = fleet.crashed()
        if crashed:
            raise RuntimeError(f"a worker died while starting ({crashed[0]}); see var/demo/*/")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the fleet did not come up within {timeout:.0f}s")
        await asyncio.sleep(0.1)


async def _submit(client: Client, scenario: Scenario) -> dict[str, TaskHandle]:
    ids = {task.key: uuid.uuid4() for task in scenario.tasks}
    handles: dict[str, TaskHandle] = {}
    for start in range(0, len(scenario.tasks), 100):
        chunk = scenario.tasks[start : start + 100]
        sent = await asyncio.gather(
            *(
                client.submit(
                    t.capability,
                    t.payload,
                    task_id=ids[t.key],
                    priority=t.priority,
                    max_attempts=t.max_attempts,
                    backoff=FAST_BACKOFF,
                    timeout_s=30,
                    depends_on=[ids[d] for d in t.depends_on],
                    resources=t.resources,
                )
                for t in chunk
            )
        )
        handles.update({t.key: h for t, h in zip(chunk, sent, strict=True)})
    return handles


async def _await_outcomes(
    handles: dict[str, TaskHandle],
    scenario: Scenario,
    progress: Progress,
    fleet: Fleet,
    timeout: float,
) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    killed = False
    deadline = time.monotonic() + timeout

    async def one(key: str, handle: TaskHandle) -> None:
        outcome: TaskOutcome = await handle.outcome()
        outcomes[key] = outcome.state
        progress.done += 1
        progress.states[outcome.state] += 1

    waiters = [asyncio.create_task(one(k, h)) for k, h in handles.items()]
    try:
        while progress.done < len(handles):
            if not killed and progress.done >= len(handles) * 0.35:
                fleet.kill_agents("victim")  # mid-run, with work in hand
                killed = True
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {progress.done} of {len(handles)} tasks finished within {timeout:.0f}s"
                )
            await asyncio.sleep(0.05)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return outcomes


async def _watch(
    store: EventStore, progress: Progress, on_progress: Callable[[Progress], None]
) -> None:
    position = 0
    alive: set[str] = set()
    holder: dict[UUID, str] = {}
    while True:
        for record in await store.read_all(position, 5000):
            position = record.position
            event = load_event(record)
            match event:
                case AgentJoined():
                    alive.add(event.agent_id)
                    progress.agent_load.setdefault(event.agent_id, 0)
                case AgentLost() | AgentLeft():
                    alive.discard(event.agent_id)
                    if isinstance(event, AgentLost):
                        progress.lost.append(event.agent_id)
                case TaskAssigned():
                    holder[event.task_id] = event.agent_id
                    progress.agent_load[event.agent_id] = (
                        progress.agent_load.get(event.agent_id, 0) + 1
                    )
                case TaskSucceeded() | TaskFailed() | TaskCancelled() | TaskDead() | TaskRequeued():
                    held = holder.pop(event.task_id, None)
                    if held:
                        progress.agent_load[held] -= 1
        progress.agents_alive = len(alive)
        on_progress(progress)
        await asyncio.sleep(0.2)


async def _read_history(store: EventStore) -> list[RecordedEvent]:
    history: list[RecordedEvent] = []
    position = 0
    while batch := await store.read_all(position, 10_000):
        history.extend(batch)
        position = batch[-1].position
    return history


async def _archive_dead_letters(
    conn: BrokerConnection, store: EventStore, store_url: str, scenario: Scenario
) -> int:
    """Move the run's dead letters into the archive beside its history, before its queues go.

    `rally dlq list` then finds them after the demo has removed its namespace.
    """
    await asyncio.sleep(0.5)  # the dead-letter publishes are confirmed, give the stats a beat
    archive = open_archive(store_url)
    await archive.start()
    try:
        directory = DlqDirectory(
            conn.topology,
            extra=[conn.topology.inbox_queue(a.agent_id).name for a in scenario.agents],
            agents=store_agent_ids(store),
            archive=archive,
        )
        await DeadLetterMover(conn, archive, directory=directory).drain()
        return len(await archive.find(Query(statuses=STATUSES)))
    finally:
        await archive.close()


async def _remove_namespace(conn: BrokerConnection, scenario: Scenario) -> None:
    topology = conn.topology
    names = [q.name for q in topology.delay_queues()]
    for worker in ("registry", "tasks", "allocator"):
        names.append(topology.worker_queue(worker))
    names += [topology.inbox_queue(a.agent_id).name for a in scenario.agents]
    # the inboxes' shared DLQ and the clients' go with the namespace (delete_namespace)
    names += [f"{n}.dlq" for n in names if ".delay." not in n]
    # best effort: a queue still in use comes back on the next declare
    with contextlib.suppress(Exception):
        await delete_namespace(conn, names)
