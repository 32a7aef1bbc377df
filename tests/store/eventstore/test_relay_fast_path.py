"""The relay's fast path: committed rows handed over whole, published with no store call
but the delete; the ordering check in the append (rows behind another owner's pending row
go to the sweeper, rows behind the relay's own are chained to them); the take_own
fallback for rows reached late or whose predecessor is not known to be out.

Publishing goes to an in-memory publisher (what the relay hands a publisher is what is
checked here; test_relay.py covers RabbitMQ). The store is always the real one; a thin
delegating wrapper counts the relay's ``outbox_take_own`` calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from tests.store.eventstore.test_relay import encode
from tests.support.fixtures.store import Store, StoreFactory
from workers.store import (
    Metadata,
    NewEvent,
    OutboxMessage,
    OutboxRow,
    OutgoingRecord,
    StreamAppend,
)
from workers.store.base import CommitListener, Handoff
from workers.store.relay import Relay


class Sink:
    """An in-memory publisher; ``fail_next`` makes that many calls fail first."""

    def __init__(self) -> None:
        self.messages: list[OutgoingRecord] = []
        self.fail_next = 0

    async def publish_outbox(self, messages: Sequence[OutgoingRecord]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker went away (simulated)")
        for message in messages:
            await asyncio.sleep(0)  # let other tasks interleave, as a network would
            self.messages.append(message)

    def versions(self, stream: str) -> list[object]:
        bodies = [json.loads(m.body) for m in self.messages if m.exchange == "events"]
        return [b["version"] for b in bodies if b["stream"] == stream]

    def ids(self) -> list[str]:
        return [m.message_id for m in self.messages]


class CountingStore:
    """The real store behind the relay, counting ``outbox_take_own`` calls.

    ``stall`` moves each hand-off's claim time that many seconds into the past: the
    relay then sees the rows as a loop that stalled that long would. ``delay`` hands
    the rows over that many seconds after the commit, for real.
    """

    def __init__(self, store: Store, *, stall: float = 0.0, delay: float = 0.0) -> None:
        self.store = store
        self.stall = stall
        self.delay = delay
        self.take_own_calls = 0

    def attach_relay(self, owner: str, claim_seconds: float, on_commit: CommitListener) -> None:
        def stalled(handoff: Handoff) -> None:
            late = dataclasses.replace(handoff, claimed_at=handoff.claimed_at - self.stall)
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, on_commit, late)
            else:
                on_commit(late)

        self.store.attach_relay(owner, claim_seconds, stalled)

    def detach_relay(self) -> None:
        self.store.detach_relay()

    async def outbox_take_own(
        self, owner: str, ids: Sequence[int], claim_seconds: float
    ) -> list[OutboxRow]:
        self.take_own_calls += 1
        return await self.store.outbox_take_own(owner, ids, claim_seconds)

    async def outbox_claim_due(
        self, owner: str, limit: int, claim_seconds: float
    ) -> list[OutboxRow]:
        return await self.store.outbox_claim_due(owner, limit, claim_seconds)

    async def outbox_done(self, ids: Sequence[int]) -> None:
        await self.store.outbox_done(ids)

    async def outbox_release(self, ids: Sequence[int], delay_seconds: float) -> None:
        await self.store.outbox_release(ids, delay_seconds)

    async def outbox_pending(self) -> int:
        return await self.store.outbox_pending()

    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return await self.store.acquire_lease(name, owner, ttl_seconds)

    async def release_lease(self, name: str, owner: str) -> None:
        await self.store.release_lease(name, owner)


def ev(**data: object) -> NewEvent:
    return NewEvent("Happened", data)


def notice(message_id: str) -> OutboxMessage:
    return OutboxMessage("inbox", "agent.a1", message_id.encode(), message_id, {"kind": "notice"})


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``check`` holds; the bound only keeps a broken test from hanging."""
    deadline = time.monotonic() + 15
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def relay_on(store: Store | CountingStore, sink: Sink, **options: float) -> Relay:
    options = {"sweep_interval": 0.01, "lease_seconds": 1.0, **options}
    relay = Relay(store, sink, encode, **options)  # type: ignore[arg-type]
    await relay.start()
    return relay


async def test_handed_rows_equal_what_the_store_reads_back(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    handed: list[Handoff] = []
    # A claim of 0 s leaves the rows due at once, so the sweeper's query reads them back.
    store.attach_relay("fast", 0.0, handed.append)
    data = {"z": 1, "a": [1.5, None, True, "é✓"], "nested": {"y": {"b": 2}, "x": -3}}
    message = OutboxMessage("inbox", "agent.a1", b"\x00body", "m-1", {"k": "v", "n": "2"})
    meta = Metadata(message_id="in-1", correlation_id="c-1", sender="tests")
    await store.append("task-1", 0, [ev(**data), ev()], metadata=meta, outbox=[message])

    (handoff,) = handed
    read_back = await store.outbox_claim_due("sweeper", 10, 30.0)
    assert list(handoff.rows) == read_back
    assert [r.event for r in handoff.rows[:2]] == await store.read("task-1")
    first = handoff.rows[0].event
    assert first is not None
    assert first.data == data
    assert first.recorded_at.utcoffset() == timedelta(0)
    assert handoff.rows[2].message == OutgoingRecord(
        "inbox", "agent.a1", b"\x00body", "m-1", {"k": "v", "n": "2"}
    )


async def test_a_commit_is_published_with_no_take_own(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = CountingStore(await opened(any_store_url))
    sink = Sink()
    relay = await relay_on(store, sink)
    try:
        for v in range(5):
            await store.store.append("task-1", v, [ev(v=v)], outbox=[notice(f"n-{v}")])
        await store.store.append("task-2", 0, [ev(), ev()])
        await eventually(lambda: _published(sink, 12), "12 messages published")
        await eventually(lambda: _drained(store), "outbox drained")
    finally:
        await relay.stop()
    assert sink.versions("task-1") == [1, 2, 3, 4, 5]
    assert sink.versions("task-2") == [1, 2]
    assert store.take_own_calls == 0
    assert relay.counts.fast == 12
    assert relay.counts.swept == relay.counts.taken == 0


async def test_rows_behind_a_pending_row_are_not_handed(
    opened: StoreFactory, any_store_url: str
) -> None:
    bare = await opened(any_store_url)  # no relay: its rows are born unclaimed
    await bare.append("task-s", 0, [ev()])
    store = await opened(any_store_url)
    handed: list[Handoff] = []
    store.attach_relay("fast", 30.0, handed.append)
    await store.append_many(
        [StreamAppend("task-s", 1, [ev(), ev()]), StreamAppend("task-t", 0, [ev()])],
        outbox=[notice("n-1")],
    )

    # task-s is behind the bare row: not handed, written for the sweeper. The other
    # stream and the side-effect message are not held back.
    (handoff,) = handed
    assert [(r.stream, r.event.version if r.event else None) for r in handoff.rows] == [
        ("task-t", 1),
        (None, None),
    ]
    swept = await store.outbox_claim_due("sweeper", 10, 30.0)
    assert [(r.stream, r.event.version) for r in swept if r.event] == [
        ("task-s", 1),
        ("task-s", 2),
        ("task-s", 3),
    ]
    assert len(swept) == 3  # the handed rows stay claimed by the fast path

    # Once the stream has nothing pending, its next append takes the fast path again.
    await store.outbox_done([r.id for r in [*swept, *handoff.rows]])
    await store.append("task-s", 3, [ev()])
    assert [r.stream for r in handed[1].rows] == ["task-s"]


async def test_rows_behind_the_relays_own_pending_rows_are_chained_to_them(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    handed: list[Handoff] = []
    store.attach_relay("fast", 30.0, handed.append)
    await store.append("task-1", 0, [ev(), ev()])
    await store.append_many(
        [StreamAppend("task-1", 2, [ev()]), StreamAppend("task-2", 0, [ev()])],
        outbox=[notice("n-1")],
    )
    first, second = handed
    # Every pending row of task-1 is the relay's own: handed, after the newest of them.
    assert [r.stream for r in second.rows] == ["task-1", "task-2", None]
    assert second.after == {"task-1": first.rows[-1].id}

    # Once one of them is not the relay's any more (released after a failed publish),
    # the stream's next rows go to the sweeper.
    await store.outbox_release([first.rows[0].id], 0.0)
    await store.append("task-1", 3, [ev()], outbox=[notice("n-2")])
    assert [r.stream for r in handed[2].rows] == [None]


async def test_a_blocked_stream_is_swept_in_order_after_the_blocker(
    opened: StoreFactory, any_store_url: str
) -> None:
    # Another replica's relay holds task-s's first row (born claimed by it, unpublished).
    other = await opened(any_store_url)
    theirs: list[Handoff] = []
    other.attach_relay("other-replica", 30.0, theirs.append)
    await other.append("task-s", 0, [ev(by="other")])

    store = CountingStore(await opened(any_store_url))
    sink = Sink()
    relay = await relay_on(store, sink)
    try:
        await store.store.append("task-s", 1, [ev(by="us")], outbox=[notice("n-1")])
        await store.store.append("task-t", 0, [ev()])
        await eventually(lambda: _published(sink, 2), "the unblocked rows published")
        assert sink.versions("task-s") == []
        # The other replica gives its row up (say its publish failed): the sweeper now
        # takes task-s from its oldest row.
        await other.outbox_release([r.id for r in theirs[0].rows], 0.0)
        await eventually(lambda: _published(sink, 4), "the blocked stream swept")
        await eventually(lambda: _drained(store), "outbox drained")
    finally:
        await relay.stop()
    assert sink.versions("task-s") == [1, 2]
    assert relay.counts.fast == 2  # task-t's event and the notice
    assert relay.counts.swept == 2
    assert store.take_own_calls == 0


async def test_rows_reached_late_go_through_take_own(
    opened: StoreFactory, any_store_url: str
) -> None:
    # The loop "stalled" for 6 of the 10 s claim: the claim is still ours, but only
    # take_own may say so (and renew it).
    store = CountingStore(await opened(any_store_url), stall=6.0)
    sink = Sink()
    relay = await relay_on(store, sink, claim_seconds=10.0)
    try:
        await store.store.append("task-1", 0, [ev(), ev()], outbox=[notice("n-1")])
        await eventually(lambda: _published(sink, 3), "3 messages published")
        await eventually(lambda: _drained(store), "outbox drained")
    finally:
        await relay.stop()
    assert sink.versions("task-1") == [1, 2]
    assert store.take_own_calls >= 1
    assert relay.counts.taken == 3
    assert relay.counts.fast == relay.counts.swept == 0


async def test_rows_whose_claim_ran_out_are_published_once_by_the_sweeper(
    opened: StoreFactory, any_store_url: str
) -> None:
    # Rows handed over only after their 0.3 s claim ran out: take_own finds them no
    # longer ours and leaves them to the sweeper; each goes out exactly once, in order.
    store = CountingStore(await opened(any_store_url), delay=0.5)
    sink = Sink()
    relay = await relay_on(store, sink, claim_seconds=0.3)
    try:
        for v in range(4):
            await store.store.append("task-1", v, [ev(v=v)])
        await eventually(lambda: _published(sink, 4), "4 messages published")
        await eventually(lambda: _drained(store), "outbox drained")
        await asyncio.sleep(0.2)  # room for a duplicate to show up, if there were one
    finally:
        await relay.stop()
    assert sink.versions("task-1") == [1, 2, 3, 4]
    assert len(set(sink.ids())) == len(sink.ids())
    assert store.take_own_calls >= 1
    assert relay.counts.fast == relay.counts.taken == 0
    assert relay.counts.swept == 4


async def test_a_failed_publish_holds_back_the_rest_of_its_commit(
    opened: StoreFactory, any_store_url: str
) -> None:
    # One commit split across fast-path batches of 2; the first batch fails to publish
    # and is released. The second must not overtake it: take_own holds it back and the
    # sweeper publishes the stream from its oldest row.
    store = CountingStore(await opened(any_store_url))
    sink = Sink()
    sink.fail_next = 1
    relay = await relay_on(store, sink, batch_size=2, retry_delay=0.05)
    try:
        await store.store.append("task-1", 0, [ev(i=i) for i in range(5)])
        await eventually(lambda: _published(sink, 5), "5 messages published")
        await eventually(lambda: _drained(store), "outbox drained")
    finally:
        await relay.stop()
    assert sink.versions("task-1") == [1, 2, 3, 4, 5]
    assert len(set(sink.ids())) == 5
    assert store.take_own_calls >= 1


async def test_a_row_handed_before_its_predecessor_does_not_overtake_it(
    opened: StoreFactory, any_store_url: str
) -> None:
    # Two commits on one stream whose hand-offs reach the relay in the wrong order (on
    # PostgreSQL concurrent appends can resume in any order after their commits). The
    # relay is driven by hand here: flush() publishes what it was handed, then sweeps.
    store = CountingStore(await opened(any_store_url))
    sink = Sink()
    relay = Relay(store, sink, encode)
    handed: list[Handoff] = []
    store.store.attach_relay(relay.owner, relay.claim_seconds, handed.append)
    await store.store.append("task-1", 0, [ev()])
    await store.store.append("task-1", 1, [ev()])
    first, second = handed
    assert second.after == {"task-1": first.rows[0].id}

    relay._on_commit(second)
    assert await relay.flush() == 0  # its predecessor is pending: held for the sweeper
    assert store.take_own_calls == 1
    relay._on_commit(first)
    assert await relay.flush() == 2  # the first directly, then the second swept
    assert sink.versions("task-1") == [1, 2]
    assert (relay.counts.fast, relay.counts.swept) == (1, 1)
    assert await store.outbox_pending() == 0


async def _published(sink: Sink, count: int) -> bool:
    assert len(sink.messages) <= count, f"more than {count} messages: {sink.ids()}"
    return len(sink.messages) == count


async def _drained(store: CountingStore) -> bool:
    return await store.outbox_pending() == 0
