"""A tiny scripted agent for the worker tests: registers, heartbeats, answers assignments.

It speaks only through RabbitMQ, like a real agent: commands out through the
publisher, notices in through its own inbox queue (a Consumer with a Router).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.publisher import Publisher
from broker.router import Incoming, Router
from contracts import (
    AssignTask,
    DeregisterAgent,
    Heartbeat,
    LeaseAcquired,
    LeaseLost,
    Message,
    RegisterAgent,
    RejectAssignment,
    ReportTaskFailed,
    ReportTaskStarted,
    ReportTaskSucceeded,
    StopTask,
    TaskAccepted,
    TaskOutcome,
)

Work = Callable[["ScriptedAgent", AssignTask], Awaitable[None]]


async def succeed(agent: ScriptedAgent, task: AssignTask) -> None:
    await agent.report(task, "started")
    await agent.report(task, "succeeded", result={"echo": task.payload})


class Inbox:
    """Everything delivered to one inbox, kept in order."""

    def __init__(self, conn: BrokerConnection, publisher: Publisher, recipient: str) -> None:
        self.recipient = recipient
        self.received: list[Message] = []
        self._changed = asyncio.Event()
        router = Router()
        for cls in (AssignTask, StopTask, TaskOutcome, TaskAccepted, LeaseAcquired, LeaseLost):
            router.add(cls, self._on)
        spec = conn.topology.inbox_queue(recipient)
        conn.test_queues.append(spec.name)  # type: ignore[attr-defined]
        conn.test_queues.append(spec.dlq)  # type: ignore[attr-defined]
        self.consumer = Consumer(conn, spec, router, publisher, worker="test", replica=recipient)
        self.handlers: list[Callable[[Message], Awaitable[None]]] = []

    async def _on(self, incoming: Incoming[Any]) -> None:
        self.received.append(incoming.payload)
        self._changed.set()
        for handler in self.handlers:
            await handler(incoming.payload)

    def of(self, cls: type[Message]) -> list[Any]:
        return [m for m in self.received if isinstance(m, cls)]

    async def wait_for(
        self, predicate: Callable[[Inbox], Any], timeout: float = 10.0, what: str = ""
    ) -> Any:
        async with asyncio.timeout(timeout):
            while not (found := predicate(self)):
                self._changed.clear()
                await self._changed.wait()
        return found


class ScriptedAgent:
    def __init__(
        self,
        conn: BrokerConnection,
        agent_id: str,
        *,
        capabilities: tuple[str, ...] = ("work",),
        capacity: int = 1,
        heartbeat_s: float = 0.3,
        work: Work = succeed,
    ) -> None:
        self.conn = conn
        self.agent_id = agent_id
        self.capabilities = capabilities
        self.capacity = capacity
        self.heartbeat_s = heartbeat_s
        self.work = work
        self.publisher = Publisher(conn, sender=agent_id)
        self.inbox = Inbox(conn, self.publisher, agent_id)
        self.inbox.handlers.append(self._dispatch)
        self.running: dict[Any, AssignTask] = {}
        self._beat: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()

    async def start(self, *, register: bool = True) -> ScriptedAgent:
        await self.publisher.start()
        await self.inbox.consumer.start()
        if register:
            await self.register()
        self._beat = asyncio.create_task(self._heartbeats())
        return self

    async def register(self) -> None:
        await self.send(
            RegisterAgent(
                agent_id=self.agent_id,
                capabilities=self.capabilities,
                capacity=self.capacity,
                heartbeat_interval_s=self.heartbeat_s,
            )
        )

    async def send(self, command: Message) -> None:
        await self.publisher.send(command)

    async def _heartbeats(self) -> None:
        while True:
            await self.send(
                Heartbeat(
                    agent_id=self.agent_id,
                    load=len(self.running),
                    running=tuple(self.running),
                )
            )
            await asyncio.sleep(self.heartbeat_s)

    def silence(self) -> None:
        """Stop heartbeating (the process 'died'), but keep the inbox to see what comes."""
        if self._beat is not None:
            self._beat.cancel()

    async def deregister(self, *, drain: bool = True) -> None:
        await self.send(DeregisterAgent(agent_id=self.agent_id, drain=drain))

    async def _dispatch(self, message: Message) -> None:
        if isinstance(message, AssignTask):
            self.running[message.task_id] = message
            job = asyncio.create_task(self._run(message))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _run(self, task: AssignTask) -> None:
        try:
            await self.work(self, task)
        finally:
            self.running.pop(task.task_id, None)

    async def report(self, task: AssignTask, what: str, **fields: Any) -> None:
        common = {
            "task_id": task.task_id,
            "agent_id": self.agent_id,
            "attempt": task.attempt,
            "fencing_token": task.fencing_token,
        }
        reports: dict[str, type[Message]] = {
            "started": ReportTaskStarted,
            "succeeded": ReportTaskSucceeded,
            "failed": ReportTaskFailed,
            "reject": RejectAssignment,
        }
        cls = reports[what]
        await self.send(cls.model_validate({**common, **fields}))

    async def stop(self) -> None:
        self.silence()
        for job in list(self._jobs):
            job.cancel()
        with contextlib.suppress(Exception):
            await self.inbox.consumer.stop(timeout=2)
