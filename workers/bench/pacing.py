"""Keep a fixed number of operations in flight: how the bench saturates without flooding."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def pipelined(count: int, window: int, start: Callable[[int], Awaitable[None]]) -> None:
    """Run ``start(i)`` for i < count with at most ``window`` unfinished; raise the first error.

    Cancelling the caller cancels every operation still in flight.
    """
    slots = asyncio.Semaphore(max(1, window))
    failures: list[BaseException] = []
    running: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slots.release()
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                failures.append(error)

    async def one(i: int) -> None:
        await start(i)

    try:
        for i in range(count):
            await slots.acquire()
            if failures:
                break
            task = asyncio.create_task(one(i))
            running.add(task)
            task.add_done_callback(finished)
        if running:
            await asyncio.wait(set(running))
    finally:
        for task in list(running):
            task.cancel()
    if failures:
        raise failures[0]
