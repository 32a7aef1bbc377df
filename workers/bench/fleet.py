"""A throw-away rallypoint fleet for one bench run: its own namespace, store and processes.

Worker replicas are real OS processes (``python -m workers.runtime.process``,
started through the demo's :class:`~workers.demo.fleet.Fleet`), each SDK
agent another one (``python -m workers.bench.agent_proc``). On exit, whatever
happened, the agents leave, the workers stop, the namespace's queues and
exchanges are deleted and the store is removed (the SQLite directory, or the
PostgreSQL schema).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.sdk import Client
from broker.settings import BrokerSettings
from broker.topology import Topology
from workers.bench.procs import stop_processes
from workers.demo.fleet import WORKERS, Fleet
from workers.store import open_store
from workers.store.base import EventStore
from workers.store.postgres_schema import quote_ident

log = structlog.get_logger(__name__)

AGENT_HEARTBEAT_S = 5.0


@dataclass(frozen=True, slots=True)
class FleetShape:
    replicas: int = 1  # of each worker
    agents: int = 2  # agent processes, one SDK agent each
    agent_capacity: int = 256
    store_url: str | None = None  # None: a fresh SQLite file under scratch
    scratch: Path = Path("var") / "bench"
    start_timeout_s: float = 60.0


@dataclass
class RunningFleet:
    namespace: str
    client: Client
    fleet: Fleet
    agents: dict[str, subprocess.Popen[bytes]]
    store_url: str

    def worker_pids(self) -> dict[str, int]:
        names = [f"{w}-{r}" for w in WORKERS for r in range(len(self.fleet.workers) // 3)]
        return {name: proc.pid for name, proc in zip(names, self.fleet.workers, strict=True)}

    def agent_pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.agents.items()}

    def check_alive(self) -> None:
        dead = self.fleet.crashed() + [
            f"agent {name} exited {p.returncode}"
            for name, p in self.agents.items()
            if p.poll() is not None
        ]
        if dead:
            raise RuntimeError(f"a bench process died ({dead[0]}); see {self.fleet.log_dir}")


def scratch_store(store_url: str | None, run_dir: Path, namespace: str) -> tuple[str, str | None]:
    """The store URL for this run, and the PostgreSQL schema to drop afterwards (if any)."""
    if store_url is None or store_url.startswith("sqlite"):
        return f"sqlite:///{run_dir / 'rally.db'}", None
    schema = f"rally_{namespace.replace('-', '_')}"
    return f"{store_url}{'&' if '?' in store_url else '?'}schema={schema}", schema


@contextlib.asynccontextmanager
async def rally_fleet(amqp_url: str, shape: FleetShape) -> AsyncIterator[RunningFleet]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    run_dir = (shape.scratch / namespace).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    store_url, schema = scratch_store(shape.store_url, run_dir, namespace)
    env = {
        **os.environ,
        "RALLY_AMQP_URL": amqp_url,
        "RALLY_NAMESPACE": namespace,
        "RALLY_STORE_URL": store_url,
        "RALLY_LOG_FORMAT": "json",
        "RALLY_LOG_LEVEL": "WARNING",
    }
    settings = BrokerSettings.from_env(env)
    agent_ids = [f"{namespace}-agent-{i}" for i in range(shape.agents)]
    conn = await BrokerConnection(settings, role="bench").connect()
    store = open_store(store_url)
    fleet = Fleet(env, run_dir)
    agents: dict[str, subprocess.Popen[bytes]] = {}
    client = Client(settings=settings)
    ok = False
    try:
        await declare_topology(conn)
        await store.start()  # migrated once here, before replicas race to do it
        fleet.start_workers(shape.replicas)
        for agent_id in agent_ids:
            agents[agent_id] = _spawn_agent(agent_id, shape.agent_capacity, env, run_dir)
        running = RunningFleet(namespace, client, fleet, agents, store_url)
        await _wait_for_agents(store, set(agent_ids), running, shape.start_timeout_s)
        await client.connect()
        yield running
        ok = True
    except (asyncio.CancelledError, KeyboardInterrupt):
        ok = True  # interrupted, not broken: nothing in the logs to keep
        raise
    finally:
        await client.close()
        stop_processes(agents.values())  # agents first: their goodbyes reach running workers
        fleet.close()
        await store.close()
        with contextlib.suppress(Exception):  # best effort: never hide the run's own error
            await delete_namespace(conn, _queues(conn.topology, agent_ids))
        await conn.close()
        if schema is not None and shape.store_url is not None:
            await _drop_schema(shape.store_url, schema)
        if ok:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            log.warning("bench.fleet_logs_kept", path=str(run_dir))


def _spawn_agent(
    agent_id: str, capacity: int, env: dict[str, str], run_dir: Path
) -> subprocess.Popen[bytes]:
    log_file = open(run_dir / f"{agent_id}.log", "wb")  # noqa: SIM115 - lives with the process
    cmd = [sys.executable, "-m", "workers.bench.agent_proc", "--agent-id", agent_id]
    cmd += ["--capacity", str(capacity), "--heartbeat", str(AGENT_HEARTBEAT_S)]
    return subprocess.Popen(
        cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )


async def _wait_for_agents(
    store: EventStore, agent_ids: set[str], fleet: RunningFleet, timeout_s: float
) -> None:
    """Until the registry has recorded every agent: placement needs to know them all."""
    joined: set[str] = set()
    position = 0
    deadline = time.monotonic() + timeout_s
    while joined < agent_ids:
        fleet.check_alive()
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(agent_ids - joined))
            raise TimeoutError(f"agents {missing} did not join within {timeout_s:.0f}s")
        for event in await store.read_all(position, 1000):
            position = event.position
            if event.type == "AgentJoined":
                joined.add(str(event.data.get("agent_id")))
        await asyncio.sleep(0.1)


def _queues(topology: Topology, agent_ids: Sequence[str]) -> list[str]:
    names = [q.name for q in topology.delay_queues()] + [topology.shared_dlq]
    for worker in WORKERS:
        name = topology.worker_queue(worker)
        names += [name, f"{name}.dlq"]
    for agent_id in agent_ids:
        inbox = topology.inbox_queue(agent_id)
        names += [inbox.name, inbox.dlq]
    return names


async def _drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()
