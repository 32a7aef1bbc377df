"""Tasks that end or fail here, by the task manager's rules: which, and the append of each.

The allocator finds them (the work of agents that are gone, assignments never
started, tasks pending past their time-out, assignments it cannot deliver); the
tasks domain (``workers.tasks.placement``) decides their events, from each task's
fresh stream, appended alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import structlog

from contracts import Event, TaskAssigned
from workers.allocator.planning import orphaned, overdue
from workers.allocator.projection import Projection
from workers.runtime.messages import load_event, new_event, outbox_messages
from workers.store.base import EventStore, Metadata
from workers.store.errors import ConcurrencyError
from workers.tasks import placement
from workers.tasks.state import Task, evolve

log = structlog.get_logger(__name__)

WORKER = "allocator"
ROUNDS = 8
# how a task that must end is decided, from its fresh state and when it was last assigned
Ending = Callable[[Task, datetime | None], list[Event]]
Decision = tuple[UUID, Ending, str]


def gone_or_overdue(view: Projection, now: datetime, *, look_for_overdue: bool) -> list[Decision]:
    """Tasks of agents that are gone, and (``look_for_overdue``) assignments never started
    and tasks pending too long."""
    out: list[Decision] = [
        (task_id, agent_gone(agent_id, why), "handed_back")
        for task_id, agent_id, why in orphaned(view)
    ]
    if not look_for_overdue:
        return out
    not_started, expired = overdue(view, now)
    aside = {t for t, until in view.set_aside.items() if until > now}
    out += [(t, not_started_by(now), "not_started") for t in not_started if t not in aside]
    out += [
        (t, pending_expired(now, why), "pending_expired") for t, why in expired if t not in aside
    ]
    return out


async def end_task(
    store: EventStore, task_id: UUID, decide: Ending, what: str, metadata: Metadata
) -> bool:
    """Decide on the task's fresh stream and append; True if something was recorded."""
    stream = placement.stream_of(task_id)
    for _ in range(ROUNDS):
        task, assigned_at = Task(task_id), None
        for record in await store.read(stream):
            event = load_event(record)
            task = evolve(task, event)
            if isinstance(event, TaskAssigned):
                assigned_at = record.recorded_at
        events = decide(task, assigned_at)
        if not events:
            return False
        outbox = outbox_messages(placement.effects_of(task, events), sender=WORKER)
        try:
            await store.append(
                stream,
                task.version,
                [new_event(e) for e in events],
                metadata=metadata,
                outbox=outbox,
                cancel_timers_of=placement.cancels_of(task, events),
            )
        except ConcurrencyError:
            continue
        log.info(f"allocator.{what}", task_id=str(task_id), events=[e.type_name() for e in events])
        return True
    return False


def agent_gone(agent_id: str, why: str) -> Ending:
    return lambda task, _: placement.decide_agent_gone(task, agent_id, why)


def not_started_by(now: datetime) -> Ending:
    return lambda task, at: [] if at is None else placement.decide_not_started(task, at, now)


def pending_expired(now: datetime, why: str) -> Ending:
    return lambda task, _: placement.decide_pending_expired(task, now, why)


def undeliverable(why: str) -> Ending:
    return lambda task, _: placement.decide_undeliverable(task, why)
