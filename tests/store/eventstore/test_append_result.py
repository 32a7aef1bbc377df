"""AppendResult.events: what an append recorded, equal to a later read of its positions
(both adapters), so a caller can apply its own appends without reading them back."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from tests.support.fixtures.store import Store, StoreFactory
from workers.store import (
    AppendRequest,
    AppendResult,
    ConcurrencyError,
    DuplicateEventId,
    Metadata,
    NewEvent,
    OutboxMessage,
    RecordedEvent,
    StoreError,
    StreamAppend,
)
from workers.store.base import Handoff
from workers.store.group_commit import GroupCommitter


def ev(type_: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(type_, data)


async def read_positions(store: Store, positions: tuple[int, ...]) -> list[RecordedEvent]:
    """The events at ``positions``, as a reader gets them."""
    if not positions:
        return []
    page = await store.read_all(min(positions) - 1, limit=max(positions) - min(positions) + 1)
    return [e for e in page if e.position in positions]


async def assert_events_as_read(store: Store, result: AppendResult) -> None:
    assert [e.position for e in result.events] == list(result.positions)
    assert list(result.events) == await read_positions(store, result.positions)


async def test_an_append_returns_the_events_a_read_returns(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    await store.append("task-0", 0, [ev()])
    meta = Metadata(message_id="m1", correlation_id="c1", sender="agent-a", traceparent="00-x")
    nested = {"n": 1, "f": 0.1, "big": 2**62, "s": "é ✓", "list": [1, {"k": None}], "t": True}
    first, second = NewEvent("TaskSubmitted", nested, schema_version=3), ev("TaskAssigned")
    result = await store.append("task-1", 0, [first, second], metadata=meta)

    assert [(e.stream, e.version, e.id, e.type) for e in result.events] == [
        ("task-1", 1, first.id, "TaskSubmitted"),
        ("task-1", 2, second.id, "TaskAssigned"),
    ]
    assert result.events[0].schema_version == 3
    assert result.events[0].data == nested
    assert result.events[0].metadata["sender"] == "agent-a"
    assert result.events[0].recorded_at.tzinfo is not None
    await assert_events_as_read(store, result)
    # field by field too: equality of the dataclass is what "as read" means
    (read_first,) = await read_positions(store, (result.positions[0],))
    assert read_first.recorded_at == result.events[0].recorded_at
    assert read_first.metadata == result.events[0].metadata


async def test_append_many_with_outbox_and_a_relay_returns_every_event(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    handoffs: list[Handoff] = []
    store.attach_relay("relay-1", 30.0, handoffs.append)
    message = OutboxMessage("inbox", "agent.a1", b"{}", "notice-1", {"h": "v"})
    result = await store.append_many(
        [StreamAppend("task-1", 0, [ev(i=1)]), StreamAppend("agent-a", None, [ev(i=2), ev(i=3)])],
        outbox=[message],
        idempotency_key="k-1",
    )
    assert [(e.stream, e.version) for e in result.events] == [
        ("task-1", 1),
        ("agent-a", 1),
        ("agent-a", 2),
    ]
    await assert_events_as_read(store, result)
    # The relay's rows carry the same events, but as objects of their own: a caller
    # changing its result must not change what the relay publishes.
    handed = [r.event for h in handoffs for r in h.rows if r.event is not None]
    assert handed == list(result.events)
    result.events[0].data["i"] = "changed by the caller"
    assert handed[0].data == {"i": 1}


async def test_a_duplicate_carries_no_events(opened: StoreFactory, any_store_url: str) -> None:
    store = await opened(any_store_url)
    first = await store.append("task-1", 0, [ev()], idempotency_key="msg-1")
    again = await store.append("task-1", 0, [ev()], idempotency_key="msg-1")
    assert len(first.events) == 1
    assert again.duplicate
    assert again.events == ()
    assert (again.positions, again.versions) == (first.positions, first.versions)


async def test_each_request_of_a_batch_gets_its_own_events(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    await store.append("task-0", 0, [ev()])
    outcomes = await store.append_batch(
        [
            AppendRequest([StreamAppend("task-1", 0, [ev(r=1), ev(r=1)])], idempotency_key="a"),
            AppendRequest([StreamAppend("task-0", 0, [ev(r=2)])]),  # conflicts: skipped
            AppendRequest([StreamAppend("task-2", 0, [ev(r=3)])]),
            AppendRequest([StreamAppend("task-1", 0, [ev(r=4)])], idempotency_key="a"),  # repeat
        ]
    )
    first, conflict, third, repeat = outcomes
    assert isinstance(first, AppendResult)
    assert isinstance(conflict, ConcurrencyError)
    assert isinstance(third, AppendResult)
    assert isinstance(repeat, AppendResult)
    assert [e.data for e in first.events] == [{"r": 1}, {"r": 1}]
    assert [e.data for e in third.events] == [{"r": 3}]
    assert third.positions == (4,)
    await assert_events_as_read(store, first)
    await assert_events_as_read(store, third)
    assert repeat.duplicate
    assert repeat.events == ()


async def test_the_group_committer_passes_results_through(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    committer = GroupCommitter(store)
    results = await asyncio.gather(
        *(committer.append(f"agent-{i}", None, [ev(i=i), ev(i=i)]) for i in range(20)),
        committer.append("agent-0", 0, [ev()]),  # conflicts with the first (in order)
        return_exceptions=True,
    )
    assert isinstance(results[-1], ConcurrencyError)
    for i, result in enumerate(results[:-1]):
        assert isinstance(result, AppendResult)
        assert [(e.stream, e.data) for e in result.events] == [(f"agent-{i}", {"i": i})] * 2
        await assert_events_as_read(store, result)
    await committer.close()


async def test_a_failed_batch_writes_nothing_and_the_next_append_works(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    reused = NewEvent("Happened", {}, id=uuid4())
    await store.append("task-0", 0, [reused])
    before = await store.outbox_pending()
    with pytest.raises(DuplicateEventId):
        await store.append_batch(
            [
                AppendRequest([StreamAppend("task-1", 0, [ev()])], idempotency_key="k-1"),
                AppendRequest([StreamAppend("task-2", 0, [ev(), reused])]),
            ]
        )
    assert await store.last_position() == 1
    assert await store.stream_version("task-1") == 0
    assert await store.outbox_pending() == before
    again = await store.append("task-1", 0, [ev()], idempotency_key="k-1")
    assert not again.duplicate  # the key was not recorded either
    assert again.positions == (2,)
    await assert_events_as_read(store, again)


async def test_an_invalid_request_is_a_store_error_before_anything_is_written(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        await store.append("task-1", 0, [ev(bad=float("nan"))])
    assert await store.last_position() == 0
    assert (await store.append("task-1", 0, [ev()])).positions == (1,)
