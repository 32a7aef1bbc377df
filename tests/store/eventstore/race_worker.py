"""The body of one racing process (spawned by the contract's race test).

Appends ``count`` events, one at a time, to the same stream as the others,
reading the version before each append and retrying on conflict — the way
every worker handles a command.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from workers.store import ConcurrencyError, NewEvent, open_store


async def _append_all(url: str, proc: int, count: int, stream: str, barrier: Any) -> None:
    store = open_store(url)
    await store.start()
    try:
        await asyncio.to_thread(barrier.wait)  # start together: maximise contention
        for i in range(count):
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(ConcurrencyError),
                wait=wait_random(0, 0.005),
                stop=stop_after_attempt(500),
                reraise=True,
            ):
                with attempt:
                    version = await store.stream_version(stream)
                    tries = attempt.retry_state.attempt_number
                    event = NewEvent("Raced", {"proc": proc, "i": i, "attempt": tries})
                    await store.append(stream, version, [event])
    finally:
        await store.close()


def race(url: str, proc: int, count: int, stream: str, barrier: Any) -> None:
    asyncio.run(_append_all(url, proc, count, stream, barrier))
