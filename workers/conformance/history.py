"""What the history says about one task or agent: the only evidence a verdict rests on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from uuid import UUID

from contracts import (
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskRequeued,
    TaskSucceeded,
)
from workers.registry.state import stream_of as agent_stream
from workers.runtime.messages import load_event
from workers.store.base import EventStore
from workers.tasks.state import stream_of as task_stream

E = TypeVar("E", bound=Event)
TERMINAL = (TaskSucceeded, TaskCancelled, TaskDead)
POLL_S = 0.1


class Unmet(Exception):
    """What the history should have shown and did not: the scenario's one-line reason."""


class History:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def task(self, task_id: UUID) -> list[Event]:
        return [load_event(r) for r in await self.store.read(task_stream(task_id))]

    async def agent(self, agent_id: str) -> list[Event]:
        return [load_event(r) for r in await self.store.read(agent_stream(agent_id))]

    async def wait_task(
        self,
        task_id: UUID,
        until: Callable[[list[Event]], bool],
        timeout: float,
        what: str,
    ) -> list[Event]:
        """The task's events once ``until`` holds; Unmet(what) if not within ``timeout``."""
        return await _wait(lambda: self.task(task_id), until, timeout, what)

    async def wait_agent(
        self,
        agent_id: str,
        until: Callable[[list[Event]], bool],
        timeout: float,
        what: str,
    ) -> list[Event]:
        return await _wait(lambda: self.agent(agent_id), until, timeout, what)

    async def ended(self, task_id: UUID, timeout: float) -> list[Event]:
        return await self.wait_task(
            task_id, lambda es: bool(ends(es)), timeout, f"task {task_id} did not end"
        )


async def _wait(
    read: Callable[[], Awaitable[list[Event]]],
    until: Callable[[list[Event]], bool],
    timeout: float,
    what: str,
) -> list[Event]:
    deadline = time.monotonic() + timeout
    while True:
        events = await read()
        if until(events):
            return events
        if time.monotonic() > deadline:
            raise Unmet(f"{what} within {timeout:g}s ({summary(events)})")
        await asyncio.sleep(POLL_S)


def of(events: Sequence[Event], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def ends(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, TERMINAL)]


def has(kind: type[Event]) -> Callable[[list[Event]], bool]:
    return lambda events: any(isinstance(e, kind) for e in events)


def rejections(events: Sequence[Event], agent_id: str) -> list[TaskRequeued]:
    """Assignments the agent turned down (RejectAssignment), as the task manager recorded."""
    return [
        e
        for e in of(events, TaskRequeued)
        if e.agent_id == agent_id and e.reason.startswith("rejected by")
    ]


def assigned_to(events: Sequence[Event]) -> list[str]:
    return [e.agent_id for e in of(events, TaskAssigned)]


def summary(events: Sequence[Event], limit: int = 8) -> str:
    """The event types, in order, for a reason line: 'TaskSubmitted, TaskAssigned, ...'."""
    if not events:
        return "no events"
    names = [type(e).__name__ for e in events]
    head = ", ".join(names[-limit:])
    return f"... {head}" if len(names) > limit else head


def single_end(events: Sequence[Event], kind: type[E]) -> E:
    """Exactly one terminal event, of ``kind``; Unmet otherwise."""
    found = ends(events)
    if len(found) != 1:
        raise Unmet(f"{len(found)} terminal events, expected 1 ({summary(events)})")
    end = found[0]
    if not isinstance(end, kind):
        raise Unmet(f"ended {type(end).__name__}, expected {kind.__name__} ({summary(events)})")
    return end
