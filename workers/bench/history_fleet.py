"""Worker start-up, failover and throughput on top of a built history, with real processes.

Each worker is its own ``python -m workers.runtime.process`` (what ``rally
worker`` runs) against the history's store, in a namespace of its own; agents
are the bench's no-op SDK agents (``workers.bench.agent_proc``). The workers
started are whatever ``WORKERS`` lists, so a worker added later (a projection
runner, retention) takes part without a change here.

- registry start-up: spawned → its ``worker.started`` log line (it loads the
  present agents before it consumes, so that line means caught up and consuming);
- allocator start-up: a task is recorded while no allocator runs; spawned →
  that task's ``TaskAssigned`` in the store (it catches up on its first batch,
  so no log line says "caught up": the first placement does);
- failover: with a standby running, ``kill -9`` the replica that placed the last
  task, submit one → its ``TaskAssigned``;
- throughput: tasks/s of no-op tasks, ``window`` in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.errors import BrokerError
from broker.inspect import queue_stats
from broker.settings import BrokerSettings
from sdk import Client
from workers.bench.agent_proc import CAPABILITY
from workers.bench.rallypoint import saturated, submit_and_wait
from workers.bench.stats import median
from workers.runtime.procs import stop_processes
from workers.runtime.settings import WORKERS
from workers.store import open_store
from workers.store.base import EventStore
from workers.tasks.state import stream_of

POLL_S = 0.02
STARTED = '"worker.started"'


@dataclass
class FleetFigures:
    registry_start_s: list[float] = field(default_factory=list)
    allocator_start_s: list[float] = field(default_factory=list)
    failover_s: float | None = None
    failover_replica_killed: str | None = None
    tasks_per_s: float | None = None
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "registry_start_s": _med(self.registry_start_s),
            "registry_start_runs_s": [round(s, 3) for s in self.registry_start_s],
            "allocator_start_s": _med(self.allocator_start_s),
            "allocator_start_runs_s": [round(s, 3) for s in self.allocator_start_s],
            "failover_s": None if self.failover_s is None else round(self.failover_s, 3),
            "failover_replica_killed": self.failover_replica_killed,
            "tasks_per_s": None if self.tasks_per_s is None else round(self.tasks_per_s, 1),
        }


def _med(values: list[float]) -> float | None:
    return round(median(values), 3) if values else None


@dataclass
class Procs:
    """The fleet's processes by name, each logging to ``<run_dir>/<name>.log``."""

    run_dir: Path
    env: dict[str, str]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    agent_ids: list[str] = field(default_factory=list)  # every agent ever started: its inbox
    spawns: dict[str, int] = field(default_factory=dict)  # a log file per spawn, none overwritten

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def spawn(self, name: str, args: list[str], log_level: str = "WARNING") -> float:
        """Start it; answers the monotonic time just before the spawn."""
        env = {**self.env, "RALLY_LOG_LEVEL": log_level}
        self.spawns[name] = self.spawns.get(name, 0) + 1
        log_file = open(self.log(name), "wb")  # noqa: SIM115 - lives with the process
        started = time.monotonic()
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return started

    def worker(self, worker: str, replica: str = "0", log_level: str = "WARNING") -> float:
        args = ["workers.runtime.process", "--worker", worker, "--replica", replica]
        return self.spawn(f"{worker}-{replica}", args, log_level)

    def agent(self, agent_id: str, capacity: int = 256) -> float:
        args = ["workers.bench.agent_proc", "--agent-id", agent_id, "--capacity", str(capacity)]
        self.agent_ids.append(agent_id)
        return self.spawn(agent_id, args)

    def log(self, name: str) -> Path:
        """The log of the latest process of that name."""
        return self.run_dir / f"{name}.{self.spawns.get(name, 1)}.log"

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.running.pop(name)
        stop_processes([proc], sig=sig)

    def check_alive(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}; see {self.log(name)}")

    def stop_all(self) -> None:
        agents = [p for n, p in self.running.items() if "agent" in n]
        stop_processes(agents)  # agents first: their goodbyes reach running workers
        stop_processes(self.running.values())
        self.running.clear()


async def until(what: str, check: Callable[[], Any], procs: Procs, timeout_s: float) -> float:
    """Poll ``check`` (sync or async) until truthy; answers the monotonic time it was."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic()
        procs.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f}s")
        await asyncio.sleep(POLL_S)


def logged(path: Path, marker: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return marker in path.read_text(errors="replace")
        except FileNotFoundError:
            return False

    return check


def assigned(store: EventStore, task_id: UUID) -> Callable[[], Any]:
    async def check() -> str | None:
        for record in await store.read(stream_of(task_id)):
            if record.type == "TaskAssigned":
                return str(record.metadata.get("replica") or "?")
        return None

    return check


def recorded(store: EventStore, task_id: UUID) -> Callable[[], Any]:
    async def check() -> bool:
        return bool(await store.read(stream_of(task_id)))

    return check


@contextlib.asynccontextmanager
async def fleet_env(
    amqp_url: str, store_url: str, run_dir: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Procs, Client, EventStore, BrokerConnection]]:
    """A namespace, a client and a reader of the store; every process and queue gone after."""
    namespace = f"bench-history-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "RALLY_AMQP_URL": amqp_url,
        "RALLY_NAMESPACE": namespace,
        "RALLY_STORE_URL": store_url,
        "RALLY_LOG_FORMAT": "json",
        **(extra_env or {}),
    }
    settings = BrokerSettings.from_env(env)
    procs = Procs(run_dir, env)
    conn = await BrokerConnection(settings, role="bench").connect()
    client = Client(settings=settings)
    store = open_store(store_url)
    try:
        await declare_topology(conn)
        await store.start()
        await client.connect()
        yield procs, client, store, conn
    finally:
        await client.close()
        procs.stop_all()
        await store.close()
        with contextlib.suppress(Exception):  # best effort: never hide the run's own error
            names = [q.name for q in conn.topology.delay_queues()]
            for worker in WORKERS:
                names += [
                    conn.topology.worker_queue(worker),
                    f"{conn.topology.worker_queue(worker)}.dlq",
                ]
            # the inboxes share one DLQ, deleted with the namespace (and the clients' DLQ)
            names += [conn.topology.inbox_queue(agent).name for agent in procs.agent_ids]
            await delete_namespace(conn, names)
        await conn.close()


async def consuming(conn: BrokerConnection, worker: str, procs: Procs, timeout_s: float) -> None:
    queue = conn.topology.worker_queue(worker)

    async def check() -> bool:
        (stats,) = await queue_stats(conn, [queue])
        return stats.consumers >= 1

    await until(f"{worker} consuming", check, procs, timeout_s)


async def measure_fleet(
    amqp_url: str,
    store_url: str,
    run_dir: Path,
    *,
    repeats: int = 3,
    tasks: int = 500,
    window: int = 100,
    agents: int = 2,
    timeout_s: float = 300.0,
    progress: Callable[[str], None] = lambda _: None,
) -> FleetFigures:
    figures = FleetFigures()
    try:
        async with fleet_env(amqp_url, store_url, run_dir) as (procs, client, store, conn):
            await _measure(figures, procs, client, store, conn, repeats, tasks, window, agents,
                           timeout_s, progress)  # fmt: skip
    except (TimeoutError, RuntimeError, OSError, BrokerError) as exc:
        figures.errors.append(f"{type(exc).__name__}: {exc}")
    return figures


async def _measure(
    figures: FleetFigures,
    procs: Procs,
    client: Client,
    store: EventStore,
    conn: BrokerConnection,
    repeats: int,
    tasks: int,
    window: int,
    agents: int,
    timeout_s: float,
    progress: Callable[[str], None],
) -> None:
    others = [w for w in WORKERS if w not in ("registry", "allocator")]
    for worker in others:
        procs.worker(worker)
    for worker in others:
        await consuming(conn, worker, procs, timeout_s)
    # once, unmeasured: their queues are declared by the workers themselves, and a message
    # sent before its queue exists is lost (an agent's registration, a probe's wake-up)
    for worker in ("registry", "allocator"):
        procs.worker(worker, log_level="INFO")
    for worker in ("registry", "allocator"):
        await until(f"{worker} declared", logged(procs.log(f"{worker}-0"), STARTED), procs,
                    timeout_s)  # fmt: skip
        procs.stop(f"{worker}-0")
    ns = procs.env["RALLY_NAMESPACE"]
    for i in range(agents):
        procs.agent(f"{ns}-agent-{i}")
    for k in range(repeats):
        started = procs.worker("registry", log_level="INFO")
        ready = await until("registry started", logged(procs.log("registry-0"), STARTED), procs,
                            timeout_s)  # fmt: skip
        figures.registry_start_s.append(ready - started)
        if k < repeats - 1:
            procs.stop("registry-0")
    progress(f"registry start-up {figures.as_json()['registry_start_runs_s']} s")
    for i in range(agents):
        joined = _joined(store, f"{ns}-agent-{i}")
        await until(f"agent {i} joined", joined, procs, timeout_s)
    for k in range(repeats):
        handle = await client.submit(CAPABILITY, {"probe": k})
        await until("probe task recorded", recorded(store, handle.task_id), procs, timeout_s)
        started = procs.worker("allocator", log_level="INFO")
        placed = await until("first placement", assigned(store, handle.task_id), procs, timeout_s)
        figures.allocator_start_s.append(placed - started)
        await asyncio.wait_for(handle.outcome(), timeout_s)
        if k < repeats - 1:
            procs.stop("allocator-0")
    progress(f"allocator start-up {figures.as_json()['allocator_start_runs_s']} s")
    await _failover(figures, procs, client, store, timeout_s)
    progress(f"failover {figures.failover_s} s")
    await asyncio.wait_for(_warm(client, window), timeout_s)
    load = await asyncio.wait_for(saturated(client, tasks, window), timeout_s)
    figures.tasks_per_s = load.tasks_per_s
    progress(f"{tasks} tasks at {load.tasks_per_s:.0f} tasks/s")


def _joined(store: EventStore, agent_id: str) -> Callable[[], Any]:
    async def check() -> bool:
        return any(r.type == "AgentJoined" for r in await store.read(f"agent-{agent_id}"))

    return check


async def _warm(client: Client, window: int) -> None:
    await asyncio.gather(*(submit_and_wait(client, -1 - i) for i in range(min(window, 50))))


async def _failover(
    figures: FleetFigures, procs: Procs, client: Client, store: EventStore, timeout_s: float
) -> None:
    procs.worker("allocator", replica="1", log_level="INFO")
    await until("standby started", logged(procs.log("allocator-1"), STARTED), procs, timeout_s)
    handle = await client.submit(CAPABILITY, {"before_failover": True})
    active = await until_value(assigned(store, handle.task_id), procs, timeout_s)
    await asyncio.wait_for(handle.outcome(), timeout_s)
    victim = f"allocator-{active}"
    if victim not in procs.running:
        figures.errors.append(f"failover: the placing replica {active!r} is not one of ours")
        return
    figures.failover_replica_killed = victim
    killed = time.monotonic()
    procs.stop(victim, sig=signal.SIGKILL)
    handle = await client.submit(CAPABILITY, {"after_failover": True})
    placed = await until("placement after failover", assigned(store, handle.task_id), procs,
                         timeout_s)  # fmt: skip
    figures.failover_s = placed - killed
    await asyncio.wait_for(handle.outcome(), timeout_s)


async def until_value(check: Callable[[], Any], procs: Procs, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        procs.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer within {timeout_s:.0f}s")
        await asyncio.sleep(POLL_S)
