"""Submit tasks, await their results, cancel them, ask for their state and history.

::

    async with Client() as client:
        handle = await client.submit("crawl", {"url": "https://example.com"})
        print(await handle.result(timeout=60))
        print(await client.state(handle.task_id))

The client listens on its own exclusive inbox (``<ns>.client.<client_id>``);
every task it submits names that inbox as ``reply_to``, so the task manager's
``TaskOutcome`` comes back to it. The inbox is declared before the first
submit, so no outcome can arrive before there is a queue to hold it. A task's
state and history come over the broker too (``QueryTask``, answered with a
``TaskView``): a client needs the broker and its own user, nothing else.

What the inbox takes on trust: only notices published by a service user
(``RALLY_SERVICE_USERS``, default ``guest``, and the client's own broker user,
which is the workers' user when they share one URL; or ``service_users=``),
and outcomes only for tasks this client submitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable, Sequence
from typing import Any
from uuid import UUID, uuid4

import structlog
from pydantic import JsonValue

from broker.access import broker_user
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.declare import declare_topology
from broker.identity import service_users_from_env
from broker.publisher import Publisher, routing_key_for
from broker.router import Incoming, Router
from broker.settings import BrokerSettings
from contracts import (
    Backoff,
    CancelTask,
    Envelope,
    QueryTask,
    SubmitTask,
    TaskAccepted,
    TaskOutcome,
    TaskRefused,
    TaskView,
    TimelineEntry,
)
from sdk.errors import TaskCancelledError, TaskFailedError, TaskRefusedError
from sdk.logsetup import ensure_logging
from sdk.outcomes import OutcomeBook
from sdk.queries import QueryBook

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
        """The task's result; raises TaskFailedError (dead), TaskCancelledError,
        TaskRefusedError (the submit was refused) or TimeoutError."""
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
        declare: bool = True,
        service_users: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings or BrokerSettings.from_env()
        own = broker_user(self.settings.amqp_url)
        services = (
            frozenset(service_users) if service_users is not None else service_users_from_env()
        )
        # who may publish what this inbox takes: a service user, or this client's own login
        # (by default the workers log in with the same URL)
        self.trusted: frozenset[str] = services | ({own} if own else frozenset())
        # a plain (non-service) user hears its notices on the inbox of its user name, so
        # that is the client id it must listen on
        default_id = own if own and own not in services else f"client-{uuid4().hex[:12]}"
        self.client_id = client_id or default_id
        self.declare = declare  # declare the shared topology if missing (idempotent)
        self.conn: BrokerConnection | None = None
        self._book = OutcomeBook()
        self._queries = QueryBook()
        self._lock = asyncio.Lock()

    async def connect(self) -> Client:
        async with self._lock:
            if self.conn is not None:
                return self
            ensure_logging()
            conn = await BrokerConnection(
                self.settings, role="client", replica=self.client_id
            ).connect()
            if self.declare:
                await declare_topology(conn)
            self.publisher = await Publisher(conn, sender=self.client_id).start()
            router = Router()
            router.add(TaskOutcome, self._on_outcome)
            router.add(TaskAccepted, self._on_accepted)
            router.add(TaskRefused, self._on_refused)
            router.add(TaskView, self._on_view)
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

    # ---- reads (a query the task manager answers) ----
    async def view(self, task_id: UUID | TaskHandle, *, timeout: float = 10.0) -> TaskView:
        """The task as the task manager has it now (``found`` false if not, or not ours).

        Raises TimeoutError if no answer comes within ``timeout`` seconds.
        """
        return await self._query(task_id, timeline=True, timeout=timeout)

    async def state(self, task_id: UUID | TaskHandle, *, timeout: float = 10.0) -> TaskView | None:
        """The task's current state; None if the task manager has never heard of it
        (or it is not this client's user's to read)."""
        view = await self._query(task_id, timeline=False, timeout=timeout)
        return view if view.found else None

    async def history(
        self, task_id: UUID | TaskHandle, *, timeout: float = 10.0
    ) -> list[TimelineEntry]:
        """What happened to the task, oldest first, in words (the latest 200 events)."""
        return list((await self._query(task_id, timeline=True, timeout=timeout)).timeline)

    async def _query(
        self, task_id: UUID | TaskHandle, *, timeline: bool, timeout: float
    ) -> TaskView:
        await self.connect()
        tid = task_id.task_id if isinstance(task_id, TaskHandle) else self._book.canonical(task_id)
        query = QueryTask(task_id=tid, timeline=timeline)
        envelope = Envelope.wrap(query, sender=self.client_id)
        answer = self._queries.expect(envelope.id)
        try:
            await self.publisher.publish(
                envelope,
                exchange=self.publisher.topology.commands,
                routing_key=routing_key_for(query),
            )
            return await asyncio.wait_for(answer, timeout)
        finally:
            self._queries.forget(envelope.id)

    # ---- inbox ----
    def _trusted(self, incoming: Incoming[Any]) -> bool:
        if incoming.user_id in self.trusted:
            return True
        log.warning(
            "sdk.notice_refused",
            msg_type=incoming.envelope.type,
            broker_user=incoming.user_id,
            why="not published by a service user",
        )
        return False

    async def _on_outcome(self, incoming: Incoming[TaskOutcome]) -> None:
        outcome = incoming.payload
        if not self._trusted(incoming):
            return
        if not self._book.resolve(outcome):
            log.warning(
                "sdk.outcome_ignored", task_id=str(outcome.task_id), why="not submitted here"
            )
            return
        log.debug("sdk.outcome", task_id=str(outcome.task_id), state=outcome.state)

    async def _on_accepted(self, incoming: Incoming[TaskAccepted]) -> None:
        accepted = incoming.payload
        if not self._trusted(incoming) or not self._book.knows(accepted.task_id):
            return
        if accepted.duplicate_of is not None:
            # the idempotency key (or task id) was taken: this handle follows that task
            log.info(
                "sdk.duplicate_submit",
                task_id=str(accepted.task_id),
                existing=str(accepted.duplicate_of),
            )
            self._book.alias(accepted.task_id, accepted.duplicate_of)

    async def _on_refused(self, incoming: Incoming[TaskRefused]) -> None:
        refused = incoming.payload
        if not self._trusted(incoming):
            return
        log.warning(
            "sdk.submit_refused",
            task_id=str(refused.task_id),
            reason=refused.reason,
            detail=refused.detail,
        )
        self._book.fail(
            refused.task_id, TaskRefusedError(refused.task_id, refused.reason, refused.detail)
        )

    async def _on_view(self, incoming: Incoming[TaskView]) -> None:
        if self._trusted(incoming) and not self._queries.answer(
            incoming.envelope.causation_id, incoming.payload
        ):
            log.info("sdk.answer_unclaimed", task_id=str(incoming.payload.task_id))
