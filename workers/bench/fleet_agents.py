"""Many simulated agents in one OS process, each a real protocol participant over AMQP.

python -m workers.bench.fleet_agents --prefix ns-sim --first 0 --count 2500

Every agent declares its own inbox (``ns.inbox.<id>``, dead-lettering to the
DLQ all inboxes share, exactly as an SDK agent does), consumes it, sends ``RegisterAgent``,
then a ``Heartbeat`` every ``--heartbeat`` seconds, each heartbeat one AMQP
message of its own (docs/protocol.md: never bundled with other agents'; the
workers' bundles are for many messages to one destination from one sender,
so agents sharing a process do not share a message). An ``AssignTask`` is
acked, held for ``--task-ms`` and answered with ``ReportTaskSucceeded`` carrying
the assignment's attempt and fencing token (a final report stands for the
start, as the SDK sends it). The agents share one connection and one consuming
channel per process: how many connections a fleet uses is the deployment's
choice, the messages are the protocol's.

The first agent also probes the registry: every ``PROBE_S`` it registers again
with a label holding the send time, which the registry records as
``AgentUpdated`` after every heartbeat queued before it (one FIFO queue), so
recorded time minus that label is the heartbeat handling lag.

Prints one JSON line ``{"ready": ...}`` once every inbox is declared and every
agent registered, and one ``{"done": ...}`` with its counts after SIGTERM, when
every agent has left and its inboxes are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.logs import configure_logging
from broker.publisher import Outgoing, Publisher, routing_key_for
from broker.queue_reader import Delivery, QueueReader
from broker.settings import BrokerSettings
from contracts import (
    AssignTask,
    DeregisterAgent,
    Heartbeat,
    Message,
    RegisterAgent,
    ReportTaskSucceeded,
)
from contracts.envelope import Envelope, decode, encode
from contracts.errors import ContractError

PROBE_S = 2.0
PROBE_LABEL = "probe_sent_at"
BASE_CAPABILITY = "bench.noop"


def pool_capability(pool: int) -> str:
    return f"bench.pool.{pool}"


def capabilities_of(index: int, pools: int) -> tuple[str, ...]:
    """Every agent runs ``bench.noop`` and one pool's capability: placement has candidates."""
    return (BASE_CAPABILITY, pool_capability(index % pools))


@dataclass
class Counts:
    agents: int = 0
    declare_s: float = 0.0
    heartbeats: int = 0
    heartbeat_failures: int = 0
    heartbeat_late_max_s: float = 0.0  # how far behind schedule a heartbeat went out
    assignments: int = 0
    reports: int = 0
    report_failures: int = 0
    undecodable: int = 0
    probes: int = 0


@dataclass
class SimAgent:
    agent_id: str
    capabilities: tuple[str, ...]
    capacity: int
    running: set[UUID] = field(default_factory=set)


class SimFleet:
    def __init__(
        self,
        conn: BrokerConnection,
        agents: Sequence[SimAgent],
        *,
        heartbeat_s: float,
        task_ms: float,
    ) -> None:
        self.conn = conn
        self.agents = {a.agent_id: a for a in agents}
        self.heartbeat_s = heartbeat_s
        self.task_s = task_ms / 1000
        self.counts = Counts(agents=len(agents))
        self.publisher = Publisher(conn, sender="bench-fleet")
        self.reader = QueueReader(conn, prefetch=max(100, 4 * len(agents)))
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        await self.publisher.start()
        started = time.monotonic()
        channel = await self.conn.channel(confirms=False)
        for agent in self.agents.values():
            await declare_queue(self.conn, channel, self.conn.topology.inbox_queue(agent.agent_id))
        self.counts.declare_s = time.monotonic() - started
        await self.reader.open()
        for agent in self.agents.values():
            inbox = self.conn.topology.inbox_queue(agent.agent_id).name
            await self.reader.follow(inbox, self._receive)
        await asyncio.gather(
            *(self._send(self._manifest(a), a.agent_id) for a in self.agents.values())
        )

    def _manifest(self, agent: SimAgent, labels: dict[str, str] | None = None) -> RegisterAgent:
        return RegisterAgent(
            agent_id=agent.agent_id,
            capabilities=agent.capabilities,
            capacity=agent.capacity,
            labels=labels or {},
            software_version="bench-fleet",
            heartbeat_interval_s=self.heartbeat_s,
            bundles=False,  # every notice alone: one inbox message per assignment
        )

    async def _send(self, payload: Message, sender: str, caused_by: Any = None) -> None:
        envelope = Envelope.wrap(payload, sender=sender, caused_by=caused_by)
        await self.publisher.publish_raw(
            Outgoing(
                exchange=self.conn.topology.commands,
                routing_key=routing_key_for(payload),
                body=encode(envelope),
                message_id=str(envelope.id),
                type=envelope.type,
                correlation_id=str(envelope.correlation_id),
                bundle=False,  # one AMQP message per protocol message, as an agent sends it
            )
        )

    # ---- heartbeats: each agent on its own 5 s schedule, spread over the interval ----
    async def heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = sorted(
            (now + random.uniform(0, self.heartbeat_s), agent_id) for agent_id in self.agents
        )
        while True:
            now = loop.time()
            sent = 0
            for i, (at, agent_id) in enumerate(due):
                if at > now:
                    break
                self.counts.heartbeat_late_max_s = max(self.counts.heartbeat_late_max_s, now - at)
                self._spawn(self._heartbeat(self.agents[agent_id]))
                due[i] = (at + self.heartbeat_s, agent_id)
                sent += 1
            if sent:
                due.sort()
            await asyncio.sleep(0.05)

    async def _heartbeat(self, agent: SimAgent) -> None:
        beat = Heartbeat(
            agent_id=agent.agent_id, load=len(agent.running), running=tuple(agent.running)
        )
        try:
            await self._send(beat, agent.agent_id)
            self.counts.heartbeats += 1
        except Exception:  # counted: the bench reports failed heartbeats
            self.counts.heartbeat_failures += 1

    async def probes(self) -> None:
        probe = next(iter(self.agents.values()))
        while True:
            await asyncio.sleep(PROBE_S)
            sent_at = datetime.now(UTC).isoformat()
            with contextlib.suppress(Exception):
                await self._send(self._manifest(probe, {PROBE_LABEL: sent_at}), probe.agent_id)
                self.counts.probes += 1

    # ---- assignments ----
    async def _receive(self, delivery: Delivery) -> None:
        try:
            envelope = decode(delivery.body)
        except ContractError:
            self.counts.undecodable += 1
            await delivery.nack(requeue=False)
            return
        await delivery.ack()
        payload = envelope.payload
        if isinstance(payload, AssignTask):
            agent = self.agents.get(delivery.routing_key or "")  # the inbox's own id
            if agent is not None:
                self.counts.assignments += 1
                agent.running.add(payload.task_id)
                self._spawn(self._run(agent, envelope, payload))

    async def _run(self, agent: SimAgent, envelope: Envelope[Any], task: AssignTask) -> None:
        await asyncio.sleep(self.task_s)
        report = ReportTaskSucceeded(
            task_id=task.task_id,
            agent_id=agent.agent_id,
            attempt=task.attempt,
            fencing_token=task.fencing_token,
            result=None,
        )
        try:
            await self._send(report, agent.agent_id, caused_by=envelope)
            self.counts.reports += 1
        except Exception:  # counted
            self.counts.report_failures += 1
        finally:
            agent.running.discard(task.task_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def leave(self) -> None:
        """Every agent leaves (no drain: the bench is over), then its inboxes go."""
        await self.reader.close()
        await asyncio.gather(
            *(self._send(DeregisterAgent(agent_id=a, drain=False), a) for a in self.agents),
            return_exceptions=True,
        )
        # not their DLQ: all inboxes share one, which the bench deletes with the namespace
        names = [self.conn.topology.inbox_queue(agent_id).name for agent_id in self.agents]
        with contextlib.suppress(Exception):
            await delete_queues(self.conn, names)


async def delete_queues(conn: BrokerConnection, names: list[str]) -> None:
    # not delete_namespace: that drops the exchanges too, which the bench does once, at its end
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        for name in names:
            await channel.queue_delete(name, if_unused=False, if_empty=False)
    finally:
        if not channel.is_closed:
            await channel.close()


def emit(kind: str, data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({kind: data}) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    settings = BrokerSettings.from_env()
    conn = await BrokerConnection(settings, role="bench-fleet", replica=str(args.first)).connect(
        timeout=60.0
    )
    agents = [
        SimAgent(f"{args.prefix}-{i}", capabilities_of(i, args.pools), args.capacity)
        for i in range(args.first, args.first + args.count)
    ]
    fleet = SimFleet(conn, agents, heartbeat_s=args.heartbeat, task_ms=args.task_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await fleet.start()
        emit(
            "ready", {"first": args.first, "count": args.count, "declare_s": fleet.counts.declare_s}
        )
        background = [
            asyncio.create_task(fleet.heartbeats()),
            asyncio.create_task(fleet.probes()),
        ]
        await stop.wait()
        for task in background:
            task.cancel()
        await fleet.leave()
        emit("done", asdict(fleet.counts))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.bench.fleet_agents")
    parser.add_argument("--prefix", required=True, help="agent ids are <prefix>-<i>")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--pools", type=int, default=10)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--task-ms", type=float, default=100.0)
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
