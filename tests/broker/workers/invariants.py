"""Checks made from the event history alone."""

from __future__ import annotations

from collections import Counter
from uuid import UUID

from contracts import (
    LeaseExpired,
    LeaseGranted,
    LeaseReleased,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskRequeued,
    TaskSucceeded,
)
from workers.runtime.messages import load_event
from workers.store import RecordedEvent

LEAVES = (TaskSucceeded, TaskFailed, TaskRequeued, TaskCancelled, TaskDead)


def peak_agent_load(history: list[RecordedEvent]) -> dict[str, int]:
    """The most tasks each agent ever held at once, replaying assignments and releases."""
    holder: dict[UUID, str] = {}
    load: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    for record in history:
        event = load_event(record)
        if isinstance(event, TaskAssigned):
            holder[event.task_id] = event.agent_id
            load[event.agent_id] += 1
            peak[event.agent_id] = max(peak[event.agent_id], load[event.agent_id])
        elif isinstance(event, LEAVES) and (agent := holder.pop(event.task_id, None)):
            load[agent] -= 1
    return dict(peak)


def peak_resource_use(history: list[RecordedEvent]) -> dict[str, int]:
    held: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    for record in history:
        event = load_event(record)
        if isinstance(event, LeaseGranted):
            held[event.resource] += 1
            peak[event.resource] = max(peak[event.resource], held[event.resource])
        elif isinstance(event, LeaseReleased | LeaseExpired):
            held[event.resource] -= 1
    return dict(peak)
