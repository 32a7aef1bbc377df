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
from types import TracebackType


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holders and waiters


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, _Entry] = {}

    def hold(self, *keys: str) -> _Hold:
        """``async with locks.hold(*keys):`` — every key's lock, taken in one global order."""
        # one order for everyone: two holders of {a, b} never deadlock
        return _Hold(self._locks, keys if len(keys) == 1 else sorted(set(keys)))

    def __len__(self) -> int:
        return len(self._locks)


class _Hold:
    """A class, not a generator context manager: it runs for every message a worker handles."""

    __slots__ = ("_acquired", "_entered", "_keys", "_locks")

    def __init__(self, locks: dict[str, _Entry], keys: tuple[str, ...] | list[str]) -> None:
        self._locks = locks
        self._keys = keys
        self._entered: list[_Entry] = []
        self._acquired: list[_Entry] = []

    async def __aenter__(self) -> None:
        try:
            for key in self._keys:
                entry = self._locks.get(key)
                if entry is None:
                    entry = self._locks[key] = _Entry()
                entry.users += 1
                self._entered.append(entry)
                await entry.lock.acquire()
                self._acquired.append(entry)
        except BaseException:  # cancelled while waiting: give back what was taken
            self._release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        for entry in reversed(self._acquired):
            entry.lock.release()
        for key, entry in zip(self._keys, self._entered, strict=False):
            entry.users -= 1
            if not entry.users and self._locks.get(key) is entry:
                del self._locks[key]
        self._acquired.clear()
        self._entered.clear()
