"""The tasks read model: one row per task, derived from the task fold.

Each record of a ``task-*`` stream is decoded (``load_event``) and applied with
``workers.tasks.state.evolve`` to the task as it stood just before it; the row's
columns are read off the resulting ``Task``. There is no second state machine
here: only the times come from the records themselves (the record that started
an attempt gives ``started_at``, the one that ended the task ``ended_at``).

The task before a record comes from an LRU of open tasks, checked against the
record's stream version; on a miss (a cold start, a page applied again after a
lost race) the stream is read up to that version and folded: the cost follows
the task, not the history.

``expired`` is never written here: retention sets it when a task's streams
leave the hot store, and the row stays to answer with the task's final state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from contracts import (
    ContractError,
    Event,
    TaskAssigned,
    TaskProgressed,
    TaskStarted,
    TaskSubmitted,
)
from workers.readmodels.runner import Tx, Unreadable
from workers.runtime.messages import load_event
from workers.store.base import EventStore, RecordedEvent
from workers.tasks.state import STREAM_PREFIX, TERMINAL, Task, evolve, stream_of

NAME = "tasks"
TABLE = "readmodel_tasks"
STREAMS = STREAM_PREFIX
KEEP = -1.0  # "the page said nothing of progress": the row keeps what it has
ERROR_CHARS = 500  # the error column is a summary; ``rally task show`` has it all

SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        task_id          TEXT PRIMARY KEY,
        state            TEXT NOT NULL,
        capability       TEXT,
        priority         BIGINT,
        attempt          BIGINT NOT NULL,
        agent_id         TEXT,
        owner            TEXT,
        submitted_at     TEXT NOT NULL,
        started_at       TEXT,
        ended_at         TEXT,
        error            TEXT,
        updated_position BIGINT NOT NULL,
        expired          BOOLEAN NOT NULL DEFAULT FALSE,
        progress         DOUBLE PRECISION
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {TABLE}_state ON {TABLE} (state, submitted_at)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_capability ON {TABLE} (capability, state)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_agent ON {TABLE} (agent_id, state)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_submitted ON {TABLE} (submitted_at, task_id)",
)

# One upsert per task per page. Times the page did not see keep their old value; a row
# never moves back (a page applied again after a rebuild changes nothing).
UPSERT = f"""
INSERT INTO {TABLE} (task_id, state, capability, priority, attempt, agent_id, owner,
                     submitted_at, started_at, ended_at, error, updated_position, progress)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state,
    capability = excluded.capability,
    priority = excluded.priority,
    attempt = excluded.attempt,
    agent_id = excluded.agent_id,
    owner = excluded.owner,
    submitted_at = coalesce({TABLE}.submitted_at, excluded.submitted_at),
    started_at = coalesce(excluded.started_at, {TABLE}.started_at),
    ended_at = coalesce(excluded.ended_at, {TABLE}.ended_at),
    error = excluded.error,
    updated_position = excluded.updated_position,
    progress = CASE WHEN excluded.progress < 0 THEN {TABLE}.progress ELSE excluded.progress END
WHERE excluded.updated_position > {TABLE}.updated_position
"""


def iso(moment: datetime) -> str:
    """Sortable text: UTC, microseconds, the same width for every time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(slots=True)
class _Change:
    """A task as a page left it, with the times the page's records gave it (one per task
    per page, updated in place: a catch-up makes one per record)."""

    task: Task
    position: int
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    # the latest progress the page saw; None: a new attempt cleared it; KEEP: nothing new
    progress: float | None = KEEP


def row_values(change: _Change) -> tuple[object, ...]:
    task = change.task
    spec = task.spec
    assert spec is not None  # only submitted tasks get rows
    error = task.reason if task.state in ("cancelled", "dead") else task.last_error
    submitted = iso(spec.submitted_at) if spec.submitted_at else change.submitted_at
    return (
        str(task.task_id),
        task.state,
        spec.capability,
        spec.priority,
        task.attempt,
        task.agent_id,
        task.owner,
        submitted,
        change.started_at,
        change.ended_at,
        error[:ERROR_CHARS] if error else None,
        change.position,
        change.progress,
    )


class TasksProjection:
    """The ``tasks`` projection (see the module docs)."""

    name = NAME
    schema = SCHEMA
    streams: str | None = STREAMS

    def __init__(self, store: EventStore, *, cache_size: int = 10_000) -> None:
        self.store = store
        self.cache_size = cache_size
        self._open: OrderedDict[UUID, Task] = OrderedDict()  # open tasks, least recent first

    async def apply(self, tx: Tx, records: Sequence[RecordedEvent]) -> None:
        changes: dict[UUID, _Change] = {}
        for record in records:
            task_id = UUID(record.stream.removeprefix(STREAMS))
            before = changes.get(task_id)
            task = before.task if before else await self._before(task_id, record)
            if task.version != record.version - 1:  # earlier in this page, yet out of step
                task = await self._before(task_id, record)
            event = _decoded(record)
            after = evolve(task, event)
            changes[task_id] = _changed(before, task, after, event, record)
            self._remember(after)
        for change in changes.values():
            if change.task.submitted:
                tx.execute(UPSERT, row_values(change))

    async def _before(self, task_id: UUID, record: RecordedEvent) -> Task:
        """The task just before ``record``: cached if in step, else folded from its stream."""
        cached = self._open.get(task_id)
        if cached is not None and cached.version == record.version - 1:
            self._open.move_to_end(task_id)
            return cached
        task = Task(task_id)
        if record.version == 1:
            return task
        for earlier in await self.store.read(stream_of(task_id)):
            if earlier.version >= record.version:
                break
            task = evolve(task, _decoded(earlier))
        if task.version != record.version - 1:
            raise Unreadable(record, "its stream's earlier events are no longer in the store")
        return task

    def _remember(self, task: Task) -> None:
        if task.state in TERMINAL:
            self._open.pop(task.task_id, None)
            return
        self._open[task.task_id] = task
        self._open.move_to_end(task.task_id)
        while len(self._open) > self.cache_size:
            self._open.popitem(last=False)


def _decoded(record: RecordedEvent) -> Event:
    try:
        return load_event(record)
    except (ContractError, TypeError) as exc:
        raise Unreadable(record, str(exc)) from None


def _changed(
    before: _Change | None, task: Task, after: Task, event: Event, record: RecordedEvent
) -> _Change:
    """The page's change to a task, one record on: ``task`` became ``after`` by ``event``."""
    change = before or _Change(after, record.position)
    change.task = after
    change.position = record.position
    if isinstance(event, TaskSubmitted):
        change.submitted_at = iso(record.recorded_at)
    elif isinstance(event, TaskStarted):
        change.started_at = iso(record.recorded_at)
    elif isinstance(event, TaskProgressed):
        change.progress = event.progress
    elif isinstance(event, TaskAssigned):
        change.progress = None  # a new attempt starts from nothing
    if after.state in TERMINAL and task.state not in TERMINAL:
        change.ended_at = iso(record.recorded_at)
    return change
