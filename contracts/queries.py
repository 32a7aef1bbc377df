"""Reading state over the broker: a query command, and the notice that answers it.

A client or agent asks the task manager with ``QueryTask``; the answer, a
``TaskView``, goes to the asker's inbox (chosen from its broker identity, as
for outcomes) with ``causation_id`` = the query's message id, so the asker
matches answer to question. Nobody needs the event store's credentials.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from contracts.base import Command, Notice
from contracts.tasks import TaskState

TIMELINE_MAX = 200  # entries a TaskView carries at most: the latest, so it stays small


class QueryTask(Command):
    """Ask for a task's current state and timeline; answered with ``TaskView``.

    Only the task's owner or a service user is told; anyone else hears
    ``found: false``, as for a task that does not exist.
    """

    route: ClassVar[str | None] = "tasks"

    task_id: UUID
    timeline: bool = Field(default=True, description="include the task's history in words")


class TimelineEntry(BaseModel):
    """One recorded event of the task, as a person reads it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=1, description="the event's position in the task's stream")
    type: str = Field(description="the event type, e.g. TaskAssigned")
    at: datetime = Field(description="when the task manager recorded it")
    summary: str = Field(description="what happened, and why where the history says")


class TaskView(Notice):
    """The answer to ``QueryTask``: the task as the task manager's own fold has it now."""

    task_id: UUID
    found: bool = Field(description="false: no such task, or not the asker's to read")
    state: TaskState | None = None
    capability: str | None = None
    attempt: int = 0
    agent_id: str | None = None
    result: JsonValue = None
    error: str | None = None
    stream_version: int = Field(default=0, description="events recorded on the task's stream")
    updated_at: datetime | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    earlier_events: int = Field(
        default=0, description="older events left out of the timeline to keep the view small"
    )
    result_omitted: bool = Field(
        default=False, description="the result was too large to repeat here (TaskOutcome has it)"
    )
    expired: bool = Field(
        default=False,
        description="its history left the hot store (retention): state is its final one, "
        "with no timeline",
    )
