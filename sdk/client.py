"""Submit tasks, await their results, cancel them, read their state and history.

::

    async with Client() as client:
        handle = await client.submit("crawl", {"url": "https://example.com"})
        print(await handle.result(timeout=60))

The client listens on its own exclusive inbox (``<ns>.client.<client_id>``);
every task it submits names that inbox as ``reply_to``, so the task manager's
``TaskOutcome`` comes back to it. The inbox is declared before the first
submit, so no outcome can arrive before there is a queue to hold it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Sequence
from typing import Any
from uuid import UUID, uuid4

import structlog
from pydantic import JsonValue

from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.declare import declare_topology
from broker.publisher import Publisher
from broker.router import Incoming, Router
from broker.settings import BrokerSettings
from contracts import Backoff, CancelTask, SubmitTask, TaskAccepted, TaskOutcome
from sdk.errors import NoEventStore, TaskCancelledError, TaskFailedError
from sdk.logsetup import ensure_logging
from sdk.outcomes import OutcomeBook
from sdk.taskview import EventReader, TaskEvent, TaskStatus, fold, read_history

log = structlog.get_logger(__name__)


class TaskHandle:
    """A submitted task: its id, and its outcome when it comes."""

    def __init__(self, client: Client, task_id: UUID, future: asyncio.Future[TaskOutcome]):
        self._client = client
        self._submitted_id = task_id
        self._future = future

    @property
    def task_id(self) -> UUID:
        """The task's id; for a duplicate idempotency key, the id of the existing task."""
        return self._client._book.canonical(self._submitted_id)

    def done(self) -> bool:
        return self._future.done()

    async def outcome(self, timeout: float | None = None) -> TaskOutcome:
        # shield: a caller's time-out must not cancel the future other waiters share
        return await asyncio.wait_for(asyncio.shield(self._future), timeout)

    async def result(self, timeout: float | None = None) -> JsonValue:
        """The task's result; raises TaskFailedError (dead), TaskCancelledError or TimeoutError."""
        outcome = await self.outcome(timeout)
        if outcome.state == "succeeded":
            return outcome.result
        error_cls = TaskCancelledError if outcome.state == "cancelled" else TaskFailedError
        raise error_cls(self.task_id, outcome.state, outcome.error, outcome.attempt)

    async def cancel(self, reason: str = "cancelled by request") -> None:
        await self._client.cancel(self.task_id, reason)

    def __repr__(self) -> str:
        return f"TaskHandle({self.task_id}, done={self.done()})"


class Submission:
    """What ``client.submit(...)`` returns: await it for the handle, or chain ``.result()``."""

    def __init__(self, client: Client, command: SubmitTask) -> None:
        self._client = client
        self.command = command
        self._handle: TaskHandle | None = None

    @property
    def task_id(self) -> UUID:
        return self.command.task_id

    async def _send(self) -> TaskHandle:
        if self._handle is None:
            self._handle = await self._client._send_submit(self.command)
        return self._handle

    def __await__(self) -> Generator[Any, None, TaskHandle]:
        return self._send().__await__()

    async def result(self, timeout: float | None = None) -> JsonValue:
        return await (await self._send()).result(timeout)


class Client:
    def __init__(
        self,
        client_id: str | None = None,
        *,
        settings: BrokerSettings | None = None,
        store: EventReader | None = None,
        declare: bool = True,
    ) -> None:
        self.client_id = client_id or f"client-{uuid4().hex[:12]}"
        self.settings = settings
        self.store = store
        self.declare = declare  # declare the shared topology if missing (idempotent)
        self.conn: BrokerConnection | None = None
        self._book = OutcomeBook()
        self._lock = asyncio.Lock()

    async def connect(self) -> Client:
        async with self._lock:
            if self.conn is not None:
                return self
            ensure_logging()
            settings = self.settings or BrokerSettings.from_env()
            conn = await BrokerConnection(settings, role="client", replica=self.client_id).connect()
            if self.declare:
                await declare_topology(conn)
            self.publisher = await Publisher(conn, sender=self.client_id).start()
            router = Router()
            router.add(TaskOutcome, self._on_outcome)
            router.add(TaskAccepted, self._on_accepted)
            spec = conn.topology.client_queue(self.client_id)
            self.inbox = Consumer(
                conn, spec, router, self.publisher, worker="client", replica=self.client_id
            )
            await self.inbox.start()
            self.conn = conn
        return self

    async def close(self) -> None:
        if self.conn is not None:
            await self.inbox.stop(timeout=5.0)
            await self.conn.close()
            self.conn = None

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- commands ----
    def submit(
        self,
        capability: str,
        payload: JsonValue = None,
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
        timeout_s: float = 300.0,
        max_attempts: int = 3,
        backoff: Backoff | dict[str, float] | None = None,
        depends_on: Sequence[UUID | TaskHandle] = (),
        resources: Sequence[str] = (),
        task_id: UUID | None = None,
    ) -> Submission:
        """Build the SubmitTask now (invalid options raise here); await to send it."""
        command = SubmitTask(
            task_id=task_id or uuid4(),
            capability=capability,
            payload=payload,
            priority=priority,
            idempotency_key=idempotency_key,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            backoff=Backoff.model_validate(backoff) if backoff is not None else Backoff(),
            depends_on=tuple(d.task_id if isinstance(d, TaskHandle) else d for d in depends_on),
            resources=tuple(resources),
            reply_to=self.client_id,
        )
        return Submission(self, command)

    async def _send_submit(self, command: SubmitTask) -> TaskHandle:
        await self.connect()
        # the future exists before the command leaves, so even the fastest outcome finds it
        handle = TaskHandle(self, command.task_id, self._book.future(command.task_id))
        envelope = await self.publisher.send(command)
        log.info(
            "sdk.submitted",
            task_id=str(command.task_id),
            capability=command.capability,
            message_id=str(envelope.id),
        )
        return handle

    def handle(self, task_id: UUID) -> TaskHandle:
        """A handle on a task this client submitted earlier (its outcome comes to this inbox)."""
        return TaskHandle(self, task_id, self._book.future(task_id))

    async def cancel(
        self, task_id: UUID | TaskHandle, reason: str = "cancelled by request"
    ) -> None:
        await self.connect()
        tid = task_id.task_id if isinstance(task_id, TaskHandle) else task_id
        await self.publisher.send(CancelTask(task_id=tid, reason=reason))

    # ---- reads (event store) ----
    async def state(self, task_id: UUID) -> TaskStatus | None:
        """The task as the event store has it now; None if the store has never heard of it."""
        return fold(task_id, await self.history(task_id))

    async def history(self, task_id: UUID) -> list[TaskEvent]:
        if self.store is None:
            raise NoEventStore("pass store= (e.g. workers.store.open_store(...)) to the Client")
        return await read_history(self.store, self._book.canonical(task_id))

    # ---- inbox ----
    async def _on_outcome(self, incoming: Incoming[TaskOutcome]) -> None:
        outcome = incoming.payload
        log.debug("sdk.outcome", task_id=str(outcome.task_id), state=outcome.state)
        self._book.resolve(outcome)

    async def _on_accepted(self, incoming: Incoming[TaskAccepted]) -> None:
        accepted = incoming.payload
        if accepted.duplicate_of is not None:
            # the idempotency key (or task id) was taken: this handle follows that task
            log.info(
                "sdk.duplicate_submit",
                task_id=str(accepted.task_id),
                existing=str(accepted.duplicate_of),
            )
            self._book.alias(accepted.task_id, accepted.duplicate_of)
