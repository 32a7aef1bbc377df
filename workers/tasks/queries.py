"""Answering ``QueryTask``: a task's state and timeline, over the broker, to whoever may read it.

The task comes from the task manager's own fold (``workers/tasks/state.py``)
over its stream, and the timeline from the same records in words
(``workers/tasks/timeline.py``). A task whose streams retention archived
answers its final state from the tasks read model, marked ``expired``. The
answer, a ``TaskView``, goes to the inbox of the asker's broker-vouched
identity (a service user may name its inbox in the envelope's ``sender``),
caused by the query, so the asker matches it by the query's message id. Only
the task's owner or a service user hears about the task; anyone else is told
``found: false``, exactly as for a task that does not exist, so a query cannot
even probe which task ids are taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from uuid import UUID

import structlog

from broker.errors import PublishFailed
from broker.publisher import Publisher
from broker.router import Incoming
from contracts import (
    ContractError,
    QueryTask,
    TaskState,
    TaskView,
    TimelineEntry,
)
from contracts.queries import TIMELINE_MAX
from workers.readmodels.sql import database_for
from workers.readmodels.task_queries import TaskRow, get_task
from workers.runtime.messages import load_event
from workers.store.base import EventStore, RecordedEvent
from workers.store.errors import StoreError
from workers.tasks.state import Task, fold, stream_of
from workers.tasks.timeline import describe

log = structlog.get_logger(__name__)


def reply_inbox(incoming: Incoming[Any]) -> str | None:
    """Where the answer goes: a service user's claimed sender, anyone else's own user, else none."""
    if incoming.service:
        return incoming.envelope.sender
    return incoming.principal


def may_read(task: Task, incoming: Incoming[Any]) -> bool:
    if not task.submitted:
        return False
    if incoming.service:
        return True
    # an anonymous asker has no inbox to hear the answer; an anonymous task has no owner
    return incoming.principal is not None and task.owner == incoming.principal


def view_of(task: Task, records: Sequence[RecordedEvent], *, timeline: bool = True) -> TaskView:
    """What the asker sees of a task it may read (``task`` is the fold of ``records``)."""
    terminal_error = task.state in ("cancelled", "dead")
    entries: tuple[TimelineEntry, ...] = ()
    earlier = 0
    if timeline:
        shown = records[-TIMELINE_MAX:]
        earlier = len(records) - len(shown)
        entries = tuple(
            TimelineEntry(
                version=r.version, type=r.type, at=r.recorded_at, summary=describe(load_event(r))
            )
            for r in shown
        )
    return TaskView(
        task_id=task.task_id,
        found=True,
        state=cast(TaskState, task.state),
        capability=task.spec.capability if task.spec else None,
        attempt=task.attempt,
        agent_id=task.agent_id,
        result=task.result,
        error=task.reason if terminal_error else task.last_error,
        stream_version=task.version,
        updated_at=records[-1].recorded_at if records else None,
        timeline=entries,
        earlier_events=earlier,
    )


async def expired_row(store: EventStore, task_id: UUID) -> TaskRow | None:
    """The read-model row of a task whose streams retention archived, if it is one."""
    try:
        row = await get_task(database_for(store), task_id)
    except StoreError:  # no read model in this store (yet)
        return None
    return row if row is not None and row.expired else None


def expired_view(row: TaskRow, incoming: Incoming[Any]) -> TaskView:
    """Its final state, for its owner or a service user (anyone else: not found)."""
    task_id = UUID(row.task_id)
    if not incoming.service and (incoming.principal is None or row.owner != incoming.principal):
        return TaskView(task_id=task_id, found=False)
    return TaskView(
        task_id=task_id,
        found=True,
        state=cast(TaskState, row.state),
        capability=row.capability,
        attempt=row.attempt,
        agent_id=row.agent_id,
        error=row.error,
        expired=True,
    )


def smaller(view: TaskView) -> TaskView | None:
    """The same view with less in it, for one that is over the message size limit."""
    if view.timeline:
        return view.model_copy(update={"timeline": (), "earlier_events": view.stream_version})
    if not view.result_omitted and view.result is not None:
        return view.model_copy(update={"result": None, "result_omitted": True})
    return None


class TaskQueries:
    def __init__(self, store: EventStore, publisher: Publisher) -> None:
        self.store = store
        self.publisher = publisher

    async def on_query(self, incoming: Incoming[QueryTask]) -> None:
        query = incoming.payload
        to = reply_inbox(incoming)
        if to is None:
            log.info("task.query_unanswerable", task_id=str(query.task_id), why="no inbox")
            return
        records = await self.store.read(stream_of(query.task_id))
        task = fold(query.task_id, [load_event(r) for r in records])
        if may_read(task, incoming):
            view = view_of(task, records, timeline=query.timeline)
        elif not records and (row := await expired_row(self.store, query.task_id)):
            view = expired_view(row, incoming)
        else:
            view = TaskView(task_id=query.task_id, found=False)
        await self._answer(incoming, view, to)

    async def _answer(self, incoming: Incoming[Any], view: TaskView, to: str) -> None:
        answer: TaskView | None = view
        while answer is not None:
            try:
                await self.publisher.send(answer, caused_by=incoming.envelope, to=to)
                return
            except ContractError:  # over the size limit: say less rather than nothing
                answer = smaller(answer)
            except PublishFailed as exc:  # nobody listens there (the asker has gone)
                log.warning("task.query_undeliverable", to=to, error=str(exc))
                return
        log.error("task.query_too_large", task_id=str(view.task_id))
