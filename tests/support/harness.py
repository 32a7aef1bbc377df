"""One fault-test fleet: its namespace, store, worker and agent processes, client and history.

    async with Harness(amqp_url=..., store_url=..., log_dir=tmp_path) as h:
        await h.start(agents={"a": [AgentPlan("a1", ("work",), 4)]})
        await h.workload.submit(200)
        ...inject a fault, heal...
        verdict = await h.settle(timeout=60)

Everything it started is stopped and its namespace deleted on exit, whatever
happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.settings import BrokerSettings
from broker.topology import Topology
from sdk import Client
from tests.support.fleet import WORKERS, ProcessFleet
from tests.support.workload import HistoryReader, Verdict, Workload, judge
from workers.demo.scenario import AgentPlan
from workers.store import open_store

AGENT_HEARTBEAT_S = 0.5
# the usual fleet's agents: two processes of three SDK agents each, 24 slots for "work"
AGENTS: dict[str, list[AgentPlan]] = {
    group: [AgentPlan(f"{group}{i}", ("work",), 4) for i in range(3)] for group in ("a", "b")
}


def with_query(url: str, **query: object) -> str:
    base = url if "?" in url else url.rstrip("/") + "/"
    sep = "&" if "?" in base else "?"
    return base + sep + "&".join(f"{k}={v}" for k, v in query.items())


class Harness:
    def __init__(
        self,
        *,
        amqp_url: str,
        store_url: str,
        log_dir: Path,
        client_url: str | None = None,
        client_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.namespace = f"rt-faults-{uuid.uuid4().hex[:8]}"
        # reconnect within half a second, not aio-pika's default 5 s: faults heal faster
        self.amqp_url = with_query(amqp_url, reconnect_interval=0.5)
        self.store_url = store_url
        self.settings = BrokerSettings(
            amqp_url=self.amqp_url, namespace=self.namespace, publish_timeout_s=5
        )
        env = {
            "RALLY_AMQP_URL": self.amqp_url,
            "RALLY_NAMESPACE": self.namespace,
            "RALLY_STORE_URL": store_url,
            "RALLY_LOG_LEVEL": "INFO",  # worker.started tells wait_ready a replica is up
            "RALLY_LOG_FORMAT": "json",
            "RALLY_RELAY_CLAIM_S": "2",  # a crashed replica's outbox rows go out 2 s later
        }
        log_dir.mkdir(parents=True, exist_ok=True)
        self.fleet = ProcessFleet(env, log_dir)
        self.client = Client(
            f"client-{uuid.uuid4().hex[:8]}",
            settings=self.settings.model_copy(
                update={"amqp_url": client_url or self.amqp_url, **(client_settings or {})}
            ),
        )
        self.workload = Workload(self.client)
        self.store = open_store(store_url)
        self.history = HistoryReader(self.store)
        self.conn: BrokerConnection | None = None
        self.agent_ids: list[str] = []

    async def __aenter__(self) -> Harness:
        await self.store.start()  # the schema exists before any worker races to create it
        self.conn = await BrokerConnection(self.settings, role="faults").connect()
        await declare_topology(self.conn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 10)
        await asyncio.to_thread(self.fleet.close, 3.0)  # the verdict is in: no need to drain
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(delete_namespace(self.conn, self.queue_names()), 30)
            await self.conn.close()
        await self.store.close()

    def queue_names(self) -> list[str]:
        topology = Topology(self.namespace)
        names = [q.name for q in topology.delay_queues()] + [topology.shared_dlq]
        for worker in (*WORKERS, "test"):
            names.append(topology.worker_queue(worker))
        names += [topology.inbox_queue(a).name for a in self.agent_ids]
        return names + [f"{n}.dlq" for n in names if ".delay." not in n]

    # ---- starting ----
    async def start(
        self,
        *,
        agents: Mapping[str, Sequence[AgentPlan]],
        replicas: int = 3,
        heartbeat_s: float = AGENT_HEARTBEAT_S,
        workers: Sequence[str] = WORKERS,
        connect_client: bool = True,
        timeout: float = 60.0,
        agent_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Workers, then agents; returns once every replica is up and every agent has joined.

        ``agent_env``: extra environment per agent group (e.g. another RALLY_AMQP_URL).
        """
        # replica 0 first: replicas that declare and consume a new quorum queue at the same
        # moment can meet a RabbitMQ 3.10 race (basic.consume before the queue's Ra server is
        # up: INTERNAL_ERROR) that makes a starting worker exit
        self.fleet.start_workers(min(replicas, 1), workers)
        await self.wait_ready(timeout, agents=False)
        for replica in range(1, replicas):
            for worker in workers:
                self.fleet.start_worker(worker, replica)
        # agents once the registry's queue exists: a RegisterAgent routed only to another
        # queue bound to registry.# (the test's observer) would be confirmed and never handled
        for group, plans in agents.items():
            self.agent_ids += [p.agent_id for p in plans]
            self.fleet.start_agents(group, plans, heartbeat_s, (agent_env or {}).get(group))
        await self.wait_ready(timeout)
        if connect_client:
            await self.client.connect()

    async def wait_ready(self, timeout: float = 60.0, *, agents: bool = True) -> None:
        """Every running worker has started all it runs; (``agents``) every agent has joined.

        A worker logs ``worker.started`` once its store, relay and consumers are up: no
        fault may be injected before, or it tests a start-up, not a running fleet.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.assert_no_crash()
            waiting = [n for n in self.fleet.workers() if not self.fleet.started(n)]
            await self.history.refresh()
            joined = {str(e.data["agent_id"]) for e in self.history.of_type("AgentJoined")}
            absent = sorted(set(self.agent_ids) - joined) if agents else []
            if not waiting and not absent:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"fleet not ready in {timeout:.0f}s: workers starting {waiting}, agents "
                    f"not joined {absent}\n{self.fleet.logs_tail()}"
                )
            await asyncio.sleep(0.1)

    def assert_no_crash(self) -> None:
        crashed = self.fleet.crashed()
        assert not crashed, f"processes died: {crashed}\n{self.fleet.logs_tail()}"

    # ---- the end ----
    async def settle(self, timeout: float = 60.0, *, quiet_s: float = 0.5) -> Verdict:
        """Wait for every accepted task to end, then a moment more for stray copies; judge."""
        await self.history.wait_ended(self.workload.accepted, timeout)
        # attempted-but-unconfirmed tasks that did arrive must end too
        await asyncio.sleep(quiet_s)
        arrived = {str(e.data["task_id"]) for e in self.history.of_type("TaskSubmitted")}
        maybe = [t for t in self.workload.attempted if str(t) in arrived]
        await self.history.wait_ended(maybe, timeout)
        await asyncio.sleep(quiet_s)
        return judge(await self.history.refresh(), self.workload)
