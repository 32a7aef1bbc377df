"""The kit's private fleet: worker processes, a SQLite history, and the agent under test.

Everything lives in a namespace of its own (`conf-<hex>`) and a temporary
directory, both removed at the end. The agent under test runs in a process
group of its own, so the kit can stop (SIGSTOP), resume, drain (SIGTERM) and
kill it whatever language it is written in and however `--agent-cmd` starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.inspect import queue_depths
from broker.publisher import Publisher
from broker.settings import BrokerSettings
from contracts import AgentLeft, AgentLost, DeregisterAgent
from sdk import Client
from workers.conformance.history import History
from workers.conformance.proxy import FaultProxy
from workers.runtime.procs import stop_processes
from workers.store import open_store
from workers.store.base import EventStore

WORKERS = ("registry", "tasks", "allocator")
CAPABILITY = "conformance"
HEARTBEAT_S = 1.0


class FleetError(Exception):
    """The kit's own fleet could not start: no scenario can be judged."""


@dataclass
class AgentProcess:
    """One launch of the agent under test."""

    agent_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session: the group is led by the shell

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    def alive(self) -> bool:
        """Any process of its group is left (the shell may be gone while the agent drains)."""
        self.proc.poll()
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def kill(self) -> None:
        self.signal(signal.SIGCONT)  # a stopped group ignores nothing but must not linger
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def log_tail(self, limit: int = 800) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


@dataclass
class Fleet:
    """Workers, store, broker handles and the agents launched, for one `rally conformance`."""

    agent_cmd: str
    amqp_url: str
    namespace: str = field(default_factory=lambda: f"conf-{uuid.uuid4().hex[:8]}")
    keep_dir: bool = False
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    agents: list[AgentProcess] = field(default_factory=list)
    proxies: list[FaultProxy] = field(default_factory=list)
    # work started ahead (a provisioned user) and clean-ups to finish before closing
    provisioning: asyncio.Task[Any] | None = None
    cleanups: list[asyncio.Task[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"rally-{self.namespace}-"))
        self.store_url = f"sqlite:///{self.run_dir / 'rally.db'}"
        self.env: dict[str, str] = {
            **os.environ,
            "RALLY_AMQP_URL": self.amqp_url,
            "RALLY_NAMESPACE": self.namespace,
            "RALLY_STORE_URL": self.store_url,
            "RALLY_HEARTBEAT_S": str(HEARTBEAT_S),
            "RALLY_LOG_FORMAT": "json",
            "RALLY_LOG_LEVEL": os.environ.get("RALLY_CONFORMANCE_LOG_LEVEL", "INFO"),
        }
        self.settings = BrokerSettings.from_env(self.env)

    # ---- start / stop ----
    async def start(self) -> Fleet:
        self.conn = await BrokerConnection(self.settings, role="conformance").connect()
        await declare_topology(self.conn)
        self.publisher = await Publisher(self.conn, sender="rally-conformance").start()
        self.store: EventStore = open_store(self.store_url)
        await self.store.start()
        self.history = History(self.store)
        for worker in WORKERS:
            self.workers.append(self._spawn_worker(worker))
        self.client = await Client(settings=self.settings).connect()
        await self._ready()
        return self

    async def _ready(self, timeout: float = 60.0) -> None:
        """Every worker's queue exists: what the agent and the kit send has somewhere to go."""
        names = [self.conn.topology.worker_queue(worker) for worker in WORKERS]
        deadline = time.monotonic() + timeout
        while len(await queue_depths(self.conn, names)) < len(names):
            crashed = self.crashed_workers()
            if crashed:
                raise FleetError(f"a worker died while starting ({crashed[0]}), see {self.run_dir}")
            if time.monotonic() > deadline:
                raise FleetError(f"the workers did not start within {timeout:g}s")
            await asyncio.sleep(0.2)

    def _spawn_worker(self, worker: str) -> subprocess.Popen[bytes]:
        with open(self.run_dir / f"{worker}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "workers.runtime.process", "--worker", worker],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def crashed_workers(self) -> list[str]:
        return [
            f"{w} exited {p.returncode}"
            for w, p in zip(WORKERS, self.workers, strict=True)
            if p.poll()
        ]

    async def close(self) -> None:
        """Safe on a fleet that did not finish starting."""
        for agent in self.agents:
            agent.kill()
        for proxy in self.proxies:
            await proxy.close()
        with contextlib.suppress(Exception):
            await self.client.close()
        stop_processes(self.workers, 15.0)
        if self.provisioning is not None and not self.provisioning.done():
            self.provisioning.cancel()
        await asyncio.gather(
            *self.cleanups, *filter(None, [self.provisioning]), return_exceptions=True
        )
        with contextlib.suppress(Exception):
            await self.store.close()
        with contextlib.suppress(Exception):
            topology = self.conn.topology
            names = [q.name for q in topology.delay_queues()]
            names += [topology.worker_queue(worker) for worker in WORKERS]
            names += [topology.inbox_queue(a.agent_id).name for a in self.agents]
            # an inbox declared the earlier way has a DLQ of its own; the shared DLQs (clients',
            # inboxes') go with the namespace
            names += [f"{n}.dlq" for n in names if ".delay." not in n]
            await delete_namespace(self.conn, names)
        with contextlib.suppress(Exception):
            await self.conn.close()
        if not self.keep_dir:
            _remove_tree(self.run_dir)

    # ---- the agent under test ----
    def new_agent_id(self, scenario: str) -> str:
        return f"{self.namespace}-{scenario.replace('_', '-')}-{uuid.uuid4().hex[:4]}"

    async def proxy(self, target_url: str | None = None) -> FaultProxy:
        proxy = await FaultProxy(target_url or self.amqp_url).start()
        self.proxies.append(proxy)
        return proxy

    async def retire(self, agent: AgentProcess) -> None:
        """Kill it and take it out of the fleet, so no later scenario's task is placed on it.

        The kit says goodbye for it (a service user may): waiting for the registry to count a
        killed agent lost would cost every scenario its heartbeat window.
        """
        agent.kill()
        events = await self.history.agent(agent.agent_id)
        if not events or isinstance(events[-1], AgentLeft | AgentLost):
            return  # never joined, or gone already
        await self.publisher.send(DeregisterAgent(agent_id=agent.agent_id, drain=False))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = await self.history.agent(agent.agent_id)
            if isinstance(events[-1], AgentLeft | AgentLost):
                return
            await asyncio.sleep(0.1)

    def launch(
        self, agent_id: str, *, amqp_url: str, capacity: int, extra: Mapping[str, str] = {}
    ) -> AgentProcess:
        env = {
            **self.env,
            "RALLY_AMQP_URL": amqp_url,
            "RALLY_AGENT_ID": agent_id,
            "RALLY_CAPACITY": str(capacity),
            "RALLY_HEARTBEAT_S": str(HEARTBEAT_S),
            "RALLY_CONFORMANCE_CAPABILITY": CAPABILITY,
            **extra,
        }
        env.pop("RALLY_STORE_URL", None)  # an agent never opens the history
        log_path = self.run_dir / f"agent-{agent_id}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", self.agent_cmd],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        agent = AgentProcess(agent_id, proc, log_path)
        self.agents.append(agent)
        return agent


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
