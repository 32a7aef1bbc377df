"""An agent in a few lines: a decorated async function per capability, then ``await agent.run()``.

Lifecycle: connect → declare the inbox and consume it → ``RegisterAgent`` →
heartbeats in the background → assignments run their handler, at most
``capacity`` at once → on stop, drain: say so to the registry
(``DeregisterAgent(drain=True)``), reject new assignments, let running tasks
finish, deliver every report, then leave (``DeregisterAgent(drain=False)``)
and close. After a reconnect the agent registers again, since the registry
may have counted it lost while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Any
from uuid import UUID

import structlog

from broker.access import has_own_user
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.declare import check_agent_topology, declare_topology
from broker.metrics import Exposure, expose_agent
from broker.publisher import Publisher
from broker.router import Incoming, Router
from broker.settings import BrokerSettings
from contracts import (
    AssignTask,
    DeregisterAgent,
    Heartbeat,
    LeaseAcquired,
    LeaseLost,
    Message,
    RegisterAgent,
    RejectAssignment,
    StopTask,
    all_types,
)
from sdk.admission import admit
from sdk.clock import Clock, SystemClock
from sdk.delivery import ReliableSender
from sdk.execution import Execution
from sdk.lease import LeaseBook
from sdk.logsetup import ensure_logging
from sdk.task import Handler

log = structlog.get_logger(__name__)

H = Callable[..., Any]


class Agent:
    def __init__(
        self,
        agent_id: str,
        *,
        capacity: int = 1,
        labels: dict[str, str] | None = None,
        software_version: str = "unknown",
        heartbeat_interval_s: float = 5.0,
        settings: BrokerSettings | None = None,
        clock: Clock | None = None,
        declare: bool = True,
        drain_timeout_s: float | None = None,
        flush_timeout_s: float = 60.0,
        metrics_port: int | None = None,
        bundles: bool = True,
    ) -> None:
        """``bundles=False`` registers that the workers must send it every notice alone."""
        self.agent_id = agent_id
        self.capacity = capacity
        self.labels = dict(labels or {})
        self.software_version = software_version
        self.heartbeat_interval_s = heartbeat_interval_s
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.declare = declare  # declare the shared topology if missing (idempotent)
        self.drain_timeout_s = drain_timeout_s
        self.flush_timeout_s = flush_timeout_s
        self.bundles = bundles
        self.metrics_port = metrics_port  # Prometheus /metrics; after start, the port bound
        self._metrics = Exposure()
        self.handlers: dict[str, Handler] = {}
        self.draining = False
        self.conn: BrokerConnection | None = None
        self._running: dict[UUID, Execution] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None

    # ---- handlers ----
    def capability(self, name: str) -> Callable[[H], H]:
        def decorate(fn: H) -> H:
            self.add_capability(name, fn)
            return fn

        return decorate

    def add_capability(self, name: str, handler: Handler) -> None:
        if name in self.handlers:
            raise ValueError(f"capability {name!r} already has a handler")
        self.handlers[name] = handler

    @property
    def running(self) -> tuple[UUID, ...]:
        return tuple(self._running)

    @property
    def load(self) -> int:
        return len(self._running)

    # ---- lifecycle ----
    async def start(self) -> Agent:
        if not self.handlers:
            raise ValueError("an agent needs at least one @agent.capability(...) handler")
        ensure_logging()
        self._stopped = asyncio.Event()
        settings = self.settings or BrokerSettings.from_env()
        self.conn = await BrokerConnection(settings, role="agent", replica=self.agent_id).connect()
        # with its own broker user (`rally agents provision`) it may declare nothing: it checks
        own_user = has_own_user(settings.amqp_url, self.agent_id)
        if own_user:
            await check_agent_topology(self.conn)
        elif self.declare:
            await declare_topology(self.conn)
        self.publisher = await Publisher(self.conn, sender=self.agent_id).start()
        self.sender = ReliableSender(self.publisher, self.clock)
        self.leases = LeaseBook(self.agent_id, self.sender, self.clock)
        router = Router()
        router.add(AssignTask, self._on_assign)
        router.add(StopTask, self._on_stop)
        router.add(LeaseAcquired, self._on_lease_acquired)
        router.add(LeaseLost, self._on_lease_lost)
        for message_type in all_types().values():
            if router.get(message_type.type_name()) is None:
                router.add(message_type, self._on_unexpected)
        spec = self.conn.topology.inbox_queue(self.agent_id)
        self.inbox = Consumer(
            self.conn,
            spec,
            router,
            self.publisher,
            worker="agent",
            replica=self.agent_id,
            prefetch=min(1000, 4 * self.capacity + 16),
            passive=own_user,
            # its own user may not publish dead letters: a bad delivery is rejected without
            # requeue and its inbox's x-dead-letter-exchange takes it to ns.inboxes.dlq
            dead_letter_by_broker=own_user,
        )
        await self.inbox.start()
        self._metrics = await expose_agent(self, self.metrics_port, self.conn, self.inbox)
        self.metrics_port = self._metrics.port
        await self.sender.deliver(self.sender.wrap(self._manifest()))
        self.conn.connection.reconnect_callbacks.add(self._on_reconnect)
        self._spawn(self._heartbeats(), "heartbeats")
        log.info(
            "sdk.agent_started",
            agent_id=self.agent_id,
            capabilities=sorted(self.handlers),
            capacity=self.capacity,
            connection=self.conn.name,
        )
        return self

    async def run(self) -> None:
        """Start, serve until stopped (``stop()``, SIGINT or SIGTERM), drain, close."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
        try:
            assert self._stopped is not None
            await self._stopped.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop()

    def stop(self, timeout: float | None = None) -> asyncio.Task[None]:
        """Begin draining; await the returned task to wait until the agent has left."""
        if self._stopping is None:
            wait = timeout if timeout is not None else self.drain_timeout_s
            self._stopping = asyncio.create_task(self._drain(wait), name="agent-drain")
        return self._stopping

    async def __aenter__(self) -> Agent:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _drain(self, timeout: float | None) -> None:
        log.info("sdk.agent_draining", running=self.load)
        self.draining = True
        self.sender.deliver_soon(
            self.sender.wrap(DeregisterAgent(agent_id=self.agent_id, drain=True))
        )
        executions = [e.aio_task for e in self._running.values() if e.aio_task is not None]
        if executions:
            _, late = await asyncio.wait(executions, timeout=timeout)
            for execution in list(self._running.values()):
                execution.cancel("shutdown")
            if late:
                await asyncio.wait(late)
        self.leases.close()
        for task in list(self._background):
            task.cancel()  # no heartbeat may follow the goodbye and bring the agent back
        try:
            await asyncio.wait_for(self.sender.flush(), self.flush_timeout_s)
            leave = DeregisterAgent(agent_id=self.agent_id, drain=False)
            await asyncio.wait_for(
                self.sender.deliver(self.sender.wrap(leave)), self.flush_timeout_s
            )
        except TimeoutError:
            log.error("sdk.agent_left_unconfirmed", pending=self.sender.pending)
            self.sender.cancel_all()
        await self._metrics.close()
        await self.inbox.stop(timeout=5.0)
        assert self.conn is not None
        await self.conn.close()
        log.info("sdk.agent_stopped", agent_id=self.agent_id)
        assert self._stopped is not None
        self._stopped.set()

    # ---- background ----
    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _manifest(self) -> RegisterAgent:
        return RegisterAgent(
            agent_id=self.agent_id,
            capabilities=tuple(self.handlers),
            capacity=self.capacity,
            labels=self.labels,
            software_version=self.software_version,
            heartbeat_interval_s=self.heartbeat_interval_s,
            bundles=self.bundles,
        )

    async def _heartbeats(self) -> None:
        while True:
            await self.clock.sleep(self.heartbeat_interval_s)
            beat = Heartbeat(agent_id=self.agent_id, load=self.load, running=self.running)
            try:
                # a beat that cannot go out now is stale by the next one: never retry it
                await asyncio.wait_for(self.publisher.send(beat), self.heartbeat_interval_s)
            except Exception as exc:
                log.warning("sdk.heartbeat_missed", error=f"{type(exc).__name__}: {exc}")

    def _on_reconnect(self, *_: Any) -> None:
        log.warning("sdk.agent_reconnected", agent_id=self.agent_id)
        if not self.draining:
            self.sender.deliver_soon(self.sender.wrap(self._manifest()))

    # ---- inbox ----
    async def _on_assign(self, incoming: Incoming[AssignTask]) -> None:
        assign = incoming.payload
        running = {tid: e.attempt for tid, e in self._running.items()}
        decision = admit(
            assign,
            capabilities=self.handlers.keys(),
            capacity=self.capacity,
            running=running,
            draining=self.draining,
        )
        log.info(
            "sdk.assignment",
            task_id=str(assign.task_id),
            attempt=assign.attempt,
            verdict=decision.verdict,
            reason=decision.reason,
        )
        if decision.verdict == "duplicate":
            return
        if decision.verdict == "reject":
            reject = RejectAssignment(
                task_id=assign.task_id,
                agent_id=self.agent_id,
                attempt=assign.attempt,
                fencing_token=assign.fencing_token,
                reason=decision.reason,
            )
            self.sender.deliver_soon(self.sender.wrap(reject, caused_by=incoming.envelope))
            return
        if decision.verdict == "replace":
            self._running[assign.task_id].cancel("stop")
        execution = Execution(
            incoming.envelope,
            self.handlers[assign.capability],
            agent_id=self.agent_id,
            sender=self.sender,
            leases=self.leases,
        )
        self._running[assign.task_id] = execution
        execution.start().add_done_callback(lambda _: self._finished(execution))

    def _finished(self, execution: Execution) -> None:
        if self._running.get(execution.assign.task_id) is execution:
            del self._running[execution.assign.task_id]

    async def _on_stop(self, incoming: Incoming[StopTask]) -> None:
        stop = incoming.payload
        execution = self._running.get(stop.task_id)
        if execution is None or execution.attempt != stop.attempt:
            log.info("sdk.stop_ignored", task_id=str(stop.task_id), attempt=stop.attempt)
            return
        log.info("sdk.stop_task", task_id=str(stop.task_id), reason=stop.reason)
        execution.cancel("stop")

    async def _on_lease_acquired(self, incoming: Incoming[LeaseAcquired]) -> None:
        self.leases.on_acquired(incoming.payload)

    async def _on_lease_lost(self, incoming: Incoming[LeaseLost]) -> None:
        self.leases.on_lost(incoming.payload)

    async def _on_unexpected(self, incoming: Incoming[Message]) -> None:
        # Not for an agent (a TaskOutcome sent to an inbox named by a submit, say). It is
        # acked, not dead-lettered: a provisioned agent user may not publish to the
        # dead-letter exchange, so handing it to the runtime's dead-lettering would bring it
        # back until the inbox's delivery limit; a bundle member cannot be rejected alone.
        log.warning(
            "sdk.notice_ignored",
            msg_type=incoming.envelope.type,
            message_id=incoming.message_id,
            broker_user=incoming.user_id,
            why="an agent has no handler for it",
        )
