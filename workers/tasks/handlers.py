"""Task manager handlers: load the task → decide → append events and outbox atomically.

Any number of replicas may run: each append carries the stream's expected
version and the causing message id as idempotency key, so a redelivered
message appends nothing twice and a race is decided by the store (the loser
reloads and decides again).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog

from broker.errors import PublishFailed, Reject, Retry
from broker.logs import bind_message_fields
from broker.publisher import Publisher
from broker.router import Incoming, Router
from contracts import (
    CancelTask,
    QueryTask,
    RejectAssignment,
    ReportTaskFailed,
    ReportTaskProgress,
    ReportTaskStarted,
    ReportTaskSucceeded,
    ResolveDependency,
    SubmitTask,
    TaskKeyClaimed,
    TaskTimerDue,
)
from workers.runtime.clock import Clock
from workers.runtime.conflicts import on_conflict_retry
from workers.runtime.keyed_locks import KeyedLocks
from workers.runtime.messages import load_event, metadata_for, new_event, outbox_messages
from workers.runtime.settings import WorkerSettings
from workers.store.base import EventStore, StreamAppend
from workers.store.errors import ConcurrencyError
from workers.tasks.cache import TaskCache
from workers.tasks.domain import (
    Command,
    Limits,
    decide,
    effects,
    refuse_cancel,
    stale,
    stale_level,
    timers_to_cancel,
)
from workers.tasks.queries import TaskQueries
from workers.tasks.state import Task, evolve, fold, key_stream, stream_of
from workers.tasks.submit import Submitter, decide_submit

log = structlog.get_logger(__name__)

WORKER = "tasks"
# a dependent that names an unknown task waits for it 0.5 + 1 + 1.5 + 2 s (at the
# default 5 attempts) before it is recorded cancelled
UNKNOWN_DEP_RETRY_S = 0.5
SECURITY = "security"  # the dead-letter reason of a refused message (as broker/identity.py's)
REPORTS = (ReportTaskStarted, ReportTaskProgress, ReportTaskSucceeded, ReportTaskFailed)


class TaskManager:
    def __init__(
        self,
        store: EventStore,
        publisher: Publisher,
        clock: Clock,
        settings: WorkerSettings,
        *,
        replica: str,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.settings = settings
        self.replica = replica
        self.limits = Limits(
            max_result_bytes=settings.max_result_bytes,
            max_message_bytes=settings.broker.max_message_bytes,
        )
        # this replica's messages for one task take turns instead of racing into conflicts
        self._streams = KeyedLocks()
        self.cache = TaskCache()

    def router(self) -> Router:
        router = Router()
        router.add(SubmitTask, self.on_submit)
        for cls in (*REPORTS, RejectAssignment, CancelTask, ResolveDependency, TaskTimerDue):
            router.add(cls, self.on_command)
        router.add(QueryTask, TaskQueries(self.store, self.publisher).on_query)
        return router

    async def load(self, task_id: UUID, known: Task | None = None) -> Task:
        """The task as recorded: from its whole stream, or ``known`` and what came after it."""
        if known is None:
            records = await self.store.read(stream_of(task_id))
            return fold(task_id, [load_event(r) for r in records])
        task = known
        for record in await self.store.read(stream_of(task_id), known.version + 1):
            task = evolve(task, load_event(record))
        return task

    # ---- one task ----
    async def on_command(self, incoming: Incoming[Any]) -> None:
        cmd: Command = incoming.payload
        meta = metadata_for(incoming, worker=WORKER, replica=self.replica)
        bind_message_fields(task_id=str(cmd.task_id))

        async def attempt() -> None:
            remembered = self.cache.get(cmd.task_id)
            decision = None if remembered is None else self._decide(remembered, cmd, incoming)
            if remembered is not None and isinstance(decision, tuple):
                task = remembered
            else:
                # no memory of it, or memory says "nothing to do": only the store may say that
                # (what it remembers is true up to its version: read only what came after)
                task = await self.load(cmd.task_id, remembered)
                decision = self._decide(task, cmd, incoming)
            if not isinstance(decision, tuple):
                if decision is not None:
                    self._log_stale(task, cmd, decision)
                return
            events, after = decision
            try:
                result = await self.store.append(
                    stream_of(task.task_id),
                    task.version,
                    [new_event(e) for e in events],
                    metadata=meta,
                    idempotency_key=incoming.message_id,
                    outbox=outbox_messages(
                        effects(task, events, after), sender=WORKER, caused_by=incoming.envelope
                    ),
                    cancel_timers_of=timers_to_cancel(task, after),
                )
            except ConcurrencyError:
                self.cache.forget(task.task_id)  # someone else wrote: reload on the next round
                raise
            if result.duplicate:
                self.cache.forget(task.task_id)
                return
            self.cache.put(after)
            log.info("task.recorded", events=[type(e).__name__ for e in events], state=after.state)

        async with self._streams.hold(str(cmd.task_id)):
            await on_conflict_retry(
                attempt, attempts=self.settings.conflict_attempts, what=f"task {cmd.task_id}"
            )

    def _decide(
        self, task: Task, cmd: Command, incoming: Incoming[Any]
    ) -> tuple[list[Any], Task] | str | None:
        """The events and the state after them; why a report is stale; None: nothing to do.

        Raises Reject (reason ``security``) for a cancel from neither the owner nor a
        service user: it is dead-lettered with why, and nothing is recorded.
        """
        if isinstance(cmd, CancelTask):
            refusal = refuse_cancel(task, incoming.principal, incoming.service)
            if refusal is not None:
                log.warning("task.cancel_refused", principal=incoming.principal, error=refusal)
                raise Reject(refusal, reason=SECURITY)
        if isinstance(cmd, (*REPORTS, RejectAssignment)):
            why = stale(task, cmd)
            if why is not None:
                return why
        events = decide(task, cmd, self.clock.now(), self.limits)
        if not events:
            return None
        after = task
        for event in events:
            after = evolve(after, event)
        return list(events), after

    @staticmethod
    def _log_stale(task: Task, cmd: Command, why: str) -> None:
        # how loud is the domain's call: late progress is routine, a stale holder is not
        level = (
            stale_level(task, cmd) if isinstance(cmd, (*REPORTS, RejectAssignment)) else "warning"
        )
        getattr(log, level)("task.stale_report", report=type(cmd).__name__, why=why)

    # ---- submit: the task, its dependencies' streams and its key, in one append ----
    async def on_submit(self, incoming: Incoming[SubmitTask]) -> None:
        cmd = incoming.payload
        by = Submitter(incoming.principal, incoming.service, incoming.envelope.sender)
        meta = metadata_for(incoming, worker=WORKER, replica=self.replica)
        bind_message_fields(task_id=str(cmd.task_id))
        max_bytes = self.settings.broker.max_message_bytes

        async def record(task: Task, key_owner: Task | None, deps: dict[UUID, Task]) -> None:
            now = self.clock.now()
            decision = decide_submit(cmd, by, task, deps, key_owner, now, max_bytes)
            if decision.refused is not None:
                refused = decision.refused
                log.warning("task.submit_refused", reason=refused.reason, error=refused.detail)
            elif decision.duplicate_of is not None:
                log.info("task.duplicate_submit", duplicate_of=str(decision.duplicate_of))
            if decision.refused is not None or decision.duplicate_of is not None:
                # nothing to record: answer directly (a redelivery answers again)
                for effect in decision.effects:
                    await self._notify(incoming, effect.payload, effect.to)
                return
            unknown = decision.unknown_dependency
            if unknown is not None and incoming.attempt < self.settings.broker.max_attempts:
                # its dependency may be racing it through another replica: wait a little
                # (the broker's retry back-off) before recording it cancelled for it
                raise Retry(
                    f"depends on unknown task {unknown}",
                    after=UNKNOWN_DEP_RETRY_S * incoming.attempt,
                )
            appends = [
                StreamAppend(a.stream, a.expected_version, [new_event(e) for e in a.events])
                for a in decision.appends
            ]
            result = await self.store.append_many(
                appends,
                metadata=meta,
                idempotency_key=incoming.message_id,
                outbox=outbox_messages(
                    decision.effects, sender=WORKER, caused_by=incoming.envelope
                ),
            )
            for dep in deps:  # their streams got DependentAdded: drop what we remember
                self.cache.forget(dep)
            if not result.duplicate:
                own = [a for a in decision.appends if a.stream == stream_of(task.task_id)]
                after = task
                for event in own[0].events if own else ():
                    after = evolve(after, event)
                self.cache.put(after)
                log.info("task.submitted", capability=cmd.capability, deps=len(deps))

        # A submit is nearly always of a task nobody has seen: decide as if so, without a read.
        # The append expects the task's stream (and its key's) not to exist, so if one does the
        # store refuses it, and we read and decide again at once (answering the duplicate).
        guess = not cmd.depends_on and self.cache.get(cmd.task_id) is None

        async def attempt() -> None:
            nonlocal guess
            if guess:
                guess = False
                try:
                    await record(fold(cmd.task_id, []), None, {})
                    return
                except ConcurrencyError:
                    pass
            task = await self.load(cmd.task_id)
            key_owner = await self._key_owner(cmd.idempotency_key)
            await record(task, key_owner, await self._dependencies(cmd))

        streams = [str(cmd.task_id), *map(str, cmd.depends_on)]
        if cmd.idempotency_key is not None:
            streams.append(f"key:{cmd.idempotency_key}")
        async with self._streams.hold(*streams):
            await on_conflict_retry(
                attempt, attempts=self.settings.conflict_attempts, what=f"submit {cmd.task_id}"
            )

    async def _dependencies(self, cmd: SubmitTask) -> dict[UUID, Task]:
        """Each dependency as recorded, up to the first one never submitted (that decides)."""
        deps: dict[UUID, Task] = {}
        for dep_id in dict.fromkeys(cmd.depends_on):
            deps[dep_id] = dep = await self.load(dep_id)
            if not dep.submitted or dep_id == cmd.task_id:
                break
        return deps

    async def _key_owner(self, key: str | None) -> Task | None:
        if key is None:
            return None
        records = await self.store.read(key_stream(key))
        for record in records:
            claim = load_event(record)
            if isinstance(claim, TaskKeyClaimed):
                return await self.load(claim.task_id)
        return None

    async def _notify(self, incoming: Incoming[Any], payload: Any, to: str | None) -> None:
        try:
            await self.publisher.send(payload, caused_by=incoming.envelope, to=to)
        except PublishFailed as exc:  # no inbox bound: the submitter is gone; nothing to tell
            log.warning("task.notice_undeliverable", to=to, error=str(exc))
