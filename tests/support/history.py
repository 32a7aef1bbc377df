"""Read a fleet's event history, the only thing the tests trust."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID

from contracts import Event
from workers.runtime.messages import load_event
from workers.runtime.services import Running
from workers.store import RecordedEvent


class History:
    """Read the event history, the only thing the tests trust."""

    def __init__(self, running: Running) -> None:
        self.store: Any = running.store

    async def all(self) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        while page := await self.store.read_all(out[-1].position if out else 0, 1000):
            out += page
        return out

    async def stream(self, stream: str) -> list[Event]:
        return [load_event(r) for r in await self.store.read(stream)]

    async def task(self, task_id: UUID) -> list[Event]:
        return await self.stream(f"task-{task_id}")

    async def types(self, stream: str) -> list[str]:
        return [type(e).__name__ for e in await self.stream(stream)]

    async def wait(
        self, check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
    ) -> Any:
        """Poll ``check`` (async) until it returns something truthy."""
        async with asyncio.timeout(timeout):
            while not (found := await check()):  # noqa: ASYNC110 - polling the store
                await asyncio.sleep(interval)
        return found

    async def wait_task(self, task_id: UUID, type_name: str, timeout: float = 10.0) -> Event:
        async def found() -> Event | None:
            return next(
                (e for e in await self.task(task_id) if type(e).__name__ == type_name), None
            )

        result: Event = await self.wait(found, timeout)
        return result
