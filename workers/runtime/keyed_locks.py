"""Per-key asyncio locks that do not pile up: a key's lock lives while someone holds or awaits it.

A handler decides on an aggregate by load → decide → append with the expected
version. The consumer runs many deliveries at once, so a burst of messages for
one stream (a hundred dependents of one task, fifty progress reports) would
all load the same version and all but one lose the append, again and again,
until they run out of attempts and are dead-lettered. Holding the stream's key
makes one replica's messages for a stream take turns (in delivery order:
asyncio.Lock is FIFO); only other replicas can still race, and the store
decides those.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: Counter[str] = Counter()  # holders and waiters, per key

    @contextlib.asynccontextmanager
    async def hold(self, *keys: str) -> AsyncIterator[None]:
        ordered = sorted(set(keys))  # one global order: two holders of {a, b} never deadlock
        for key in ordered:
            self._users[key] += 1
        try:
            async with contextlib.AsyncExitStack() as stack:
                for key in ordered:
                    await stack.enter_async_context(self._locks.setdefault(key, asyncio.Lock()))
                yield
        finally:
            for key in ordered:
                self._users[key] -= 1
                if not self._users[key]:
                    del self._users[key]
                    self._locks.pop(key, None)

    def __len__(self) -> int:
        return len(self._locks)
