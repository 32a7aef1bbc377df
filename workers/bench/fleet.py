"""A throw-away rallypoint fleet for one bench run: its own namespace, store and processes.

Worker replicas are real OS processes (``python -m workers.bench.worker_proc``:
``workers.runtime.process`` with its publishes counted, held by the demo's
:class:`~workers.demo.fleet.Fleet`), each SDK agent another one
(``python -m workers.bench.agent_proc``); every one serves its Prometheus
metrics on a port of its own on 127.0.0.1, which the bench reads. On exit, whatever
happened, the agents leave, the workers stop, the namespace's queues and
exchanges are deleted and the store is removed (the SQLite directory, or the
PostgreSQL schema).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import structlog

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.inspect import queue_stats
from broker.settings import BrokerSettings
from broker.topology import Topology
from sdk import Client
from workers.demo.fleet import WORKERS, Fleet
from workers.runtime.procs import stop_processes
from workers.store import open_store
from workers.store.base import EventStore
from workers.store.postgres import split_schema
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
    registry_shards: int = 1  # RALLY_REGISTRY_SHARDS: replicas of the registry per shard


@dataclass
class RunningFleet:
    namespace: str
    client: Client
    fleet: Fleet
    agents: dict[str, subprocess.Popen[bytes]]
    store_url: str
    metrics_ports: dict[str, int]  # process name (as in worker_pids, agent_pids) → port
    amqp_url: str
    store: EventStore  # the fleet's, opened by the bench too: read only
    # registry shards 1..n-1 (``registry-<shard>-<replica>``); shard 0 is in fleet.workers
    shard_workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def worker_pids(self) -> dict[str, int]:
        """Process name → pid; each registry shard's processes apart (``registry-<k>-<r>``)."""
        names = self.fleet.worker_names
        if len(names) != len(self.fleet.workers):  # spawned here, not by Fleet.start_workers
            replicas = len(self.fleet.workers) // len(WORKERS)
            names = [f"{w}-{r}" for w in WORKERS for r in range(replicas)]
        return {name: proc.pid for name, proc in zip(names, self.fleet.workers, strict=True)}

    def agent_pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.agents.items()}

    def shard_pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.shard_workers.items()}

    def check_alive(self) -> None:
        dead = self.fleet.crashed() + [
            f"{name} exited {p.returncode}"
            for name, p in (self.agents | self.shard_workers).items()
            if p.poll() is not None
        ]
        if dead:
            raise RuntimeError(f"a bench process died ({dead[0]}); see {self.fleet.log_dir}")


@dataclass(frozen=True, slots=True)
class ScratchStore:
    """A fresh store for one run: the URL the fleet uses, and what to remove afterwards."""

    url: str
    pg_dsn: str | None = None  # PostgreSQL: the server, and the schema to drop
    pg_schema: str | None = None


def scratch_store(store_url: str | None, run_dir: Path, namespace: str) -> ScratchStore:
    """Like ``store_url`` but fresh: a new SQLite file, or a new schema on that PostgreSQL."""
    if store_url is None or not store_url.startswith(("postgresql://", "postgres://")):
        return ScratchStore(f"sqlite:///{run_dir / 'rally.db'}")
    dsn, _ = split_schema(store_url)  # never the caller's own schema: it could be dropped
    schema = f"rally_{namespace.replace('-', '_')}"
    return ScratchStore(f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}", dsn, schema)


@contextlib.asynccontextmanager
async def rally_fleet(amqp_url: str, shape: FleetShape) -> AsyncIterator[RunningFleet]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    run_dir = (shape.scratch / namespace).resolve()
    scratch = scratch_store(shape.store_url, run_dir, namespace)
    store_url = scratch.url
    env = {
        **os.environ,
        "RALLY_AMQP_URL": amqp_url,
        "RALLY_NAMESPACE": namespace,
        "RALLY_STORE_URL": store_url,
        "RALLY_LOG_FORMAT": "json",
        "RALLY_LOG_LEVEL": "WARNING",
        "RALLY_METRICS_HOST": "127.0.0.1",
    }
    settings = BrokerSettings.from_env(env)
    agent_ids = [f"{namespace}-agent-{i}" for i in range(shape.agents)]
    conn = await BrokerConnection(settings, role="bench").connect()
    run_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(store_url)
    fleet = Fleet(env, run_dir)
    agents: dict[str, subprocess.Popen[bytes]] = {}
    shard_workers: dict[str, subprocess.Popen[bytes]] = {}
    client = Client(settings=settings)
    ports: dict[str, int] = {}
    ok = False
    try:
        await declare_topology(conn)
        await store.start()  # migrated once here, before replicas race to do it
        for worker in WORKERS:
            shards = shape.registry_shards if worker == "registry" else 1
            for shard in range(shards):
                shard_env = env | {"RALLY_REGISTRY_SHARDS": str(shards)}
                shard_env["RALLY_REGISTRY_SHARD"] = str(shard)
                for replica in range(shape.replicas):
                    # shard 0 keeps the names every bench reads (registry-<replica>)
                    name = f"{worker}-{shard}-{replica}" if shard else f"{worker}-{replica}"
                    ports[name] = free_port()
                    proc = _spawn_worker(worker, replica, ports[name], shard_env, run_dir, name)
                    if shard:
                        shard_workers[name] = proc
                    else:
                        fleet.workers.append(proc)
        for agent_id in agent_ids:
            ports[agent_id] = free_port()
            agents[agent_id] = _spawn_agent(
                agent_id, shape.agent_capacity, ports[agent_id], env, run_dir
            )
        running = RunningFleet(
            namespace, client, fleet, agents, store_url, ports, amqp_url, store, shard_workers
        )
        deadline = time.monotonic() + shape.start_timeout_s
        await _wait_for_workers(conn, shape, running, deadline)
        await _wait_for_agents(store, set(agent_ids), running, deadline)
        await client.connect()
        yield running
        ok = True
    except (asyncio.CancelledError, KeyboardInterrupt):
        ok = True  # interrupted, not broken: nothing in the logs to keep
        raise
    finally:
        await client.close()
        stop_processes(agents.values())  # agents first: their goodbyes reach running workers
        stop_processes(shard_workers.values())
        fleet.close()
        await store.close()
        with contextlib.suppress(Exception):  # best effort: never hide the run's own error
            await delete_namespace(conn, _queues(conn.topology, agent_ids, shape.registry_shards))
        await conn.close()
        if scratch.pg_dsn is not None and scratch.pg_schema is not None:
            try:
                await _drop_schema(scratch.pg_dsn, scratch.pg_schema)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("bench.schema_left", schema=scratch.pg_schema, error=str(exc))
        if ok:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            log.warning("bench.fleet_logs_kept", path=str(run_dir))


def free_port() -> int:
    """A port nothing listens on now, for a child to serve its metrics on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _spawn(
    name: str, args: list[str], env: dict[str, str], run_dir: Path
) -> subprocess.Popen[bytes]:
    log_file = open(run_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _spawn_worker(
    worker: str, replica: int, port: int, env: dict[str, str], run_dir: Path, name: str
) -> subprocess.Popen[bytes]:
    args = ["workers.bench.worker_proc", "--worker", worker, "--replica", str(replica)]
    return _spawn(name, [*args, "--metrics-port", str(port)], env, run_dir)


def _spawn_agent(
    agent_id: str, capacity: int, port: int, env: dict[str, str], run_dir: Path
) -> subprocess.Popen[bytes]:
    args = ["workers.bench.agent_proc", "--agent-id", agent_id, "--capacity", str(capacity)]
    args += ["--heartbeat", str(AGENT_HEARTBEAT_S), "--metrics-port", str(port)]
    return _spawn(agent_id, args, env, run_dir)


async def _wait_for_workers(
    conn: BrokerConnection, shape: FleetShape, fleet: RunningFleet, deadline: float
) -> None:
    """Until every worker consumes its queue (each registry shard its own), and every tasks
    replica does: a command sent before its queue is bound would come back unroutable."""
    queues = {conn.topology.worker_queue(w): w for w in WORKERS}
    queues |= {q: "registry" for q in conn.topology.registry_queues(shape.registry_shards)}
    # registry and allocator are single-active-consumer queues: only the active one counts
    wanted = {q: shape.replicas if worker == "tasks" else 1 for q, worker in queues.items()}
    while True:
        fleet.check_alive()
        stats = await queue_stats(conn, list(queues))
        short = [s.name for s in stats if s.consumers < wanted[s.name]]
        if not short:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker queues without their consumers: {', '.join(short)}")
        await asyncio.sleep(0.1)


async def _wait_for_agents(
    store: EventStore, agent_ids: set[str], fleet: RunningFleet, deadline: float
) -> None:
    """Until the registry has recorded every agent: placement needs to know them all."""
    joined: set[str] = set()
    position = 0
    while joined < agent_ids:
        fleet.check_alive()
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(agent_ids - joined))
            raise TimeoutError(f"agents {missing} did not join in time")
        for event in await store.read_all(position, 1000):
            position = event.position
            if event.type == "AgentJoined":
                joined.add(str(event.data.get("agent_id")))
        await asyncio.sleep(0.1)


def _queues(topology: Topology, agent_ids: Sequence[str], shards: int) -> list[str]:
    names = [q.name for q in topology.delay_queues()] + [topology.shared_dlq, topology.inbox_dlq]
    for name in [topology.worker_queue(w) for w in WORKERS] + topology.registry_queues(shards):
        names += [name, f"{name}.dlq"]
    return names + [topology.inbox_queue(agent_id).name for agent_id in agent_ids]


async def _drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()
