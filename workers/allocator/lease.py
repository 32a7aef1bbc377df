"""The store lease ``allocator``: only its holder places, so two replicas that both think
they are active (a connection blip) cannot both fill the same agent.

The lease is short (``TTL_S``) and the active replica renews it in the background
every ``RENEW_S``, so a replica that dies holds it at most ``TTL_S``; a clean stop
releases it at once. The replica the broker turns to (the queue's single active
consumer) waits for it, polling every ``POLL_S``, instead of sending its batch
back: it takes over as soon as the lease runs out. Before each append the holder
checks the lease is still its own with a margin (``valid``): a replica whose loop
stalled past its lease re-takes it or stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from workers.store.base import EventStore

log = structlog.get_logger(__name__)

NAME = "allocator"
TTL_S = 0.75
RENEW_S = 0.15  # the active replica renews this often (five renewals per TTL)
POLL_S = 0.05  # a replica waiting for the lease tries this often
MARGIN_S = 0.2  # a lease with less left than this is not trusted for an append
# A replica the broker turned to, refused the lease, says so under this second name; a
# holder that has heard nothing from the broker meanwhile is no longer its active consumer
# (a connection moved to another node, say) and lets the lease go instead of renewing it
# for ever while the one receiving the messages cannot place.
WANTED = "allocator-wanted"
WANTED_TTL_S = 3.0
IDLE_S = 1.0  # heard nothing from the broker for this long: the broker may have moved on

Acquire = Callable[[str, str, float], Awaitable[bool]]


class PlacementLease:
    def __init__(self, store: EventStore, owner: str, *, ttl_s: float = TTL_S) -> None:
        self.owner = owner
        self.ttl_s = ttl_s
        self._acquire: Acquire | None = getattr(store, "acquire_lease", None)
        self._release: Callable[[str, str], Awaitable[None]] | None = getattr(
            store, "release_lease", None
        )
        self._until = 0.0  # loop time; counted from before the acquire was sent

    @property
    def supported(self) -> bool:
        """A store without leases (a test double) relies on the single active consumer."""
        return self._acquire is not None

    def valid(self, margin_s: float = MARGIN_S) -> bool:
        return not self.supported or _now() < self._until - margin_s

    def due(self) -> bool:
        """Time to renew: less than TTL - RENEW_S left."""
        return self.supported and _now() >= self._until - (self.ttl_s - RENEW_S)

    async def try_take(self) -> bool:
        """Take or renew it once; True while ours."""
        if self._acquire is None:
            return True
        asked = _now()
        if await self._acquire(NAME, self.owner, self.ttl_s):
            self._until = asked + self.ttl_s
            return True
        self._until = 0.0
        return False

    async def take(self, wait_s: float) -> bool:
        """Take it, waiting up to ``wait_s`` for another holder's lease to run out."""
        deadline = _now() + wait_s
        while True:
            if await self.try_take():
                return True
            if _now() >= deadline:
                return False
            await asyncio.sleep(POLL_S)

    async def want(self) -> None:
        """Say that this replica, which the broker turned to, is waiting for the lease."""
        if self._acquire is not None:
            with contextlib.suppress(Exception):
                await self._acquire(WANTED, self.owner, WANTED_TTL_S)

    async def wanted_by_another(self) -> bool:
        """Whether another replica said it wants the lease (within WANTED_TTL_S)."""
        if self._acquire is None:
            return False
        # taking the marker for an instant succeeds only when nobody else holds it
        return not await self._acquire(WANTED, self.owner, 0.001)

    async def release(self) -> None:
        self._until = 0.0
        if self._release is not None:
            with contextlib.suppress(Exception):  # stopping: it runs out by itself anyway
                await self._release(NAME, self.owner)


def _now() -> float:
    return asyncio.get_running_loop().time()
