"""Per-stream order of the outbox: the rule, and the relay keeping it under contention.

The contention test uses an in-memory publisher: it checks what the store and the
relay hand to a publisher, not broker behaviour (test_relay.py does that against
RabbitMQ).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from tests.store.eventstore.test_relay import append_retrying, encode
from tests.support.fixtures.store import StoreFactory
from workers.store import NewEvent, OutgoingRecord
from workers.store.ordering import first_in_line, with_missing_as_blockers
from workers.store.relay import Relay


def test_rows_behind_a_foreign_pending_row_are_held() -> None:
    rows = [(5, "a"), (7, "a"), (6, "b"), (8, None)]
    keep, hold = first_in_line(rows, {"a": 6, "b": 9})
    assert (keep, hold) == ([5, 6, 8], [7])


def test_rows_not_claimed_block_their_stream() -> None:
    rows = [(1, "a"), (2, "a"), (3, "b")]
    blockers = with_missing_as_blockers(rows, got={2, 3}, blockers={})
    assert first_in_line([(2, "a"), (3, "b")], blockers) == ([3], [2])


class MemoryPublisher:
    def __init__(self, sink: list[OutgoingRecord]) -> None:
        self.sink = sink

    async def publish_outbox(self, messages: Sequence[OutgoingRecord]) -> None:
        for message in messages:
            await asyncio.sleep(0)  # let other relays interleave, as a network would
            self.sink.append(message)


async def test_three_replicas_on_hot_streams_keep_each_stream_in_order(
    opened: StoreFactory, any_store_url: str
) -> None:
    sink: list[OutgoingRecord] = []
    stores = [await opened(any_store_url) for _ in range(3)]
    relays = [
        Relay(s, MemoryPublisher(sink), encode, sweep_interval=0.01, lease_seconds=1.0)
        for s in stores
    ]
    for relay in relays:
        await relay.start()
    try:

        async def replica(n: int) -> None:
            for i in range(39):
                await append_retrying(stores[n], f"task-hot{i % 3}", NewEvent("E", {"n": n}))

        await asyncio.gather(*(replica(n) for n in range(3)))
        for _ in range(300):
            if await stores[0].outbox_pending() == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        for relay in relays:
            await relay.stop()

    events = [json.loads(m.body) for m in sink]
    assert len({e["id"] for e in events}) == len(events) == 117
    for stream in ("task-hot0", "task-hot1", "task-hot2"):
        versions = [e["version"] for e in events if e["stream"] == stream]
        assert versions == list(range(1, 40)), stream
