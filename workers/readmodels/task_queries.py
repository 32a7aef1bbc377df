"""Questions the tasks read model answers, in time that follows the answer's size.

``tasks_runner(store)`` catches the tasks projection up to the store's last
position first (a reader never answers from a stale view, workers running or
not); the rest are plain indexed queries over ``readmodel_tasks``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from workers.readmodels.runner import ProjectionRunner
from workers.readmodels.sql import ReadModelDb
from workers.readmodels.tasks import TABLE, TasksProjection, iso
from workers.store.base import EventStore

COLUMNS = (
    "task_id, state, capability, priority, attempt, agent_id, owner,"
    " submitted_at, started_at, ended_at, error, updated_position, expired, progress"
)


class BadCursor(ValueError):
    """A cursor this code did not hand out."""


@dataclass(frozen=True, slots=True)
class TaskRow:
    task_id: str
    state: str
    capability: str | None
    priority: int | None
    attempt: int
    agent_id: str | None
    owner: str | None
    submitted_at: str
    started_at: str | None
    ended_at: str | None
    error: str | None
    updated_position: int
    expired: bool
    progress: float | None = None  # of a running attempt, 0..1, as its agent last said

    def to_json(self) -> dict[str, Any]:
        """The keys of ``rally task list --json`` (the first seven are its original ones)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    state: str | None = None
    capability: str | None = None
    agent_id: str | None = None
    since: datetime | None = None  # submitted at or after


@dataclass(frozen=True, slots=True)
class TaskPage:
    rows: list[TaskRow]
    next_cursor: str | None  # None: this was the last page


async def tasks_runner(store: EventStore, *, page: int = 5000) -> ProjectionRunner:
    """A runner of the tasks projection, caught up to the store's last position."""
    runner = ProjectionRunner(store, [TasksProjection(store)], page=page)
    await runner.catch_up()
    return runner


def _row(values: Sequence[Any]) -> TaskRow:
    (task_id, state, capability, priority, attempt, agent_id, owner) = values[:7]
    (submitted_at, started_at, ended_at, error, position, expired, progress) = values[7:]
    return TaskRow(
        str(task_id),
        str(state),
        capability,
        None if priority is None else int(priority),
        int(attempt),
        agent_id,
        owner,
        str(submitted_at),
        started_at,
        ended_at,
        error,
        int(position),
        bool(expired),
        None if progress is None else float(progress),
    )


def encode_cursor(row: TaskRow) -> str:
    raw = json.dumps([row.submitted_at, row.task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        submitted_at, task_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadCursor(f"{cursor!r} is not a cursor rally task list printed") from None
    if not isinstance(submitted_at, str) or not isinstance(task_id, str):
        raise BadCursor(f"{cursor!r} is not a cursor rally task list printed")
    return submitted_at, task_id


async def list_tasks(
    db: ReadModelDb, where: TaskFilter, *, limit: int = 100, cursor: str | None = None
) -> TaskPage:
    """Tasks matching ``where``, newest submitted first, ``limit`` at a time.

    The order is (submitted_at, task_id) descending, so a cursor is exact: tasks
    submitted later do not shift the pages after it."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.state is not None:
        clauses.append("state = ?")
        params.append(where.state)
    if where.capability is not None:
        clauses.append("capability = ?")
        params.append(where.capability)
    if where.agent_id is not None:
        clauses.append("agent_id = ?")
        params.append(where.agent_id)
    if where.since is not None:
        clauses.append("submitted_at >= ?")
        params.append(iso(where.since))
    if cursor is not None:
        submitted_at, task_id = decode_cursor(cursor)
        clauses.append("(submitted_at < ? OR (submitted_at = ? AND task_id < ?))")
        params.extend([submitted_at, submitted_at, task_id])
    sql = f"SELECT {COLUMNS} FROM {TABLE}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY submitted_at DESC, task_id DESC LIMIT ?"
    rows = [_row(r) for r in await db.fetch(sql, [*params, limit + 1])]
    more = len(rows) > limit
    rows = rows[:limit]
    return TaskPage(rows, encode_cursor(rows[-1]) if more else None)


async def get_task(db: ReadModelDb, task_id: UUID) -> TaskRow | None:
    rows = await db.fetch(f"SELECT {COLUMNS} FROM {TABLE} WHERE task_id = ?", (str(task_id),))
    return _row(rows[0]) if rows else None


async def count_by_state(db: ReadModelDb) -> dict[str, int]:
    """How many tasks are in each state (expired rows included: their final state)."""
    rows = await db.fetch(f"SELECT state, count(*) FROM {TABLE} GROUP BY state")
    return {str(state): int(n) for state, n in rows}


# rows an agent holds now (assigned or running)
_HELD = "state IN ('assigned', 'running') AND agent_id IS NOT NULL"


async def active_by_agent(db: ReadModelDb) -> dict[str, int]:
    """Per agent, the tasks it holds now (assigned or running)."""
    rows = await db.fetch(f"SELECT agent_id, count(*) FROM {TABLE} WHERE {_HELD} GROUP BY agent_id")
    return {str(agent): int(n) for agent, n in rows}


async def open_assignments(db: ReadModelDb) -> list[tuple[UUID, str]]:
    """Each task an agent holds now (assigned or running), with that agent."""
    rows = await db.fetch(f"SELECT task_id, agent_id FROM {TABLE} WHERE {_HELD}")
    return [(UUID(str(task_id)), str(agent_id)) for task_id, agent_id in rows]
