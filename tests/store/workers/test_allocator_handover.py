"""The placement lease moves to the replica the broker turned to (both stores, no broker).

A holder that hears nothing from the broker (its connection moved to another node, and the
queue's single active consumer with it) must not renew the lease for ever while the replica
receiving the messages cannot place: once that replica says it wants the lease, the idle
holder lets it go.
"""

from __future__ import annotations

import asyncio

import pytest

from broker.errors import Retry
from workers.allocator import lease as placement_lease
from workers.allocator.handlers import Allocator
from workers.runtime.clock import SystemClock
from workers.runtime.settings import WorkerSettings
from workers.store.base import EventStore


class _NoPublisher:
    user_id = "guest"

    async def send(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("nothing is placed here")


def _allocator(store: EventStore, replica: str) -> Allocator:
    return Allocator(store, _NoPublisher(), SystemClock(), WorkerSettings(), replica=replica)  # type: ignore[arg-type]


@pytest.fixture
def store(any_store: EventStore) -> EventStore:
    return any_store  # a started store of each adapter (tests/support/fixtures/store.py)


async def test_an_idle_holder_hands_the_lease_to_the_replica_that_wants_it(
    store: EventStore,
) -> None:
    first, second = _allocator(store, "0"), _allocator(store, "1")
    await first.start()
    await second.start()
    try:
        await first.run([])  # the broker's first active consumer takes the lease
        assert first.active
        # the broker turns to the second; the first hears nothing more
        with pytest.raises(Retry, match="holds the placement lease"):
            await second.run([])
        for _ in range(int((placement_lease.IDLE_S + 3.0) / 0.05)):
            if not first.active:
                break
            await asyncio.sleep(0.05)
        assert not first.active  # handed over, not renewed for ever
        await second.run([])
        assert second.active
    finally:
        await first.stop()
        await second.stop()


async def test_a_holder_that_still_hears_the_broker_keeps_the_lease(store: EventStore) -> None:
    first, second = _allocator(store, "0"), _allocator(store, "1")
    await first.start()
    await second.start()
    try:
        await first.run([])
        with pytest.raises(Retry):
            await second.run([])
        for _ in range(int((placement_lease.IDLE_S + 1.0) / 0.1)):
            first.on_wake("TaskSubmitted")  # deliveries keep coming to the first
            await asyncio.sleep(0.1)
        assert first.active
    finally:
        await first.stop()
        await second.stop()
