"""The outbox part of the store contract: timers cancelled with the append that ends what
they watch, and events nobody subscribes to left out of the outbox.

Mixed into ``EventStoreContract``, so it runs on every adapter. Rows are looked at
the way the relay's sweeper takes them (``outbox_claim_due``): timers are given a
``not_before`` already past, so they are due at once and nothing here waits.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.support.fixtures.store import Store, StoreFactory
from workers.store import (
    AppendRequest,
    ConcurrencyError,
    NewEvent,
    OutboxMessage,
    OutboxRow,
    StreamAppend,
)
from workers.store.codec import utc_now

OWNER = "contract-sweeper"


def timer(message_id: str, watches: str | None, *, due_in_s: float = -1.0) -> OutboxMessage:
    """A timer message; due at once unless ``due_in_s`` is positive."""
    return OutboxMessage(
        "commands",
        "tasks.AssignmentTimeout",
        json.dumps({"id": message_id}).encode(),
        message_id,
        not_before=utc_now() + timedelta(seconds=due_in_s),
        timer_of=watches,
    )


def notice(message_id: str) -> OutboxMessage:
    return OutboxMessage("inbox", "client-1", message_id.encode(), message_id)


async def due(store: Store) -> list[OutboxRow]:
    return await store.outbox_claim_due(OWNER, 1000, 60.0)


def messages(rows: list[OutboxRow]) -> list[str]:
    return [r.message.message_id for r in rows if r.message is not None]


def event_types(rows: list[OutboxRow]) -> list[str]:
    return [r.event.type for r in rows if r.event is not None]


class OutboxContract:
    async def test_cancel_timers_of_deletes_that_streams_timers_in_the_append(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        await store.append(
            "task-1",
            0,
            [NewEvent("TaskAssigned", {})],
            outbox=[
                timer("t1-due", "task-1"),
                timer("t1-later", "task-1", due_in_s=3600),
                timer("t2-due", "task-2"),
                timer("untagged", None),
                notice("n1"),
            ],
        )
        assert await store.outbox_pending() == 6
        # the task ends: its watchdogs go with the append, a new timer of its own stays
        await store.append(
            "task-1",
            1,
            [NewEvent("TaskSucceeded", {})],
            outbox=[timer("t1-new", "task-1")],
            cancel_timers_of=["task-1"],
        )
        assert await store.outbox_pending() == 6  # 2 events, t2-due, untagged, n1, t1-new
        rows = await due(store)
        assert messages(rows) == ["t2-due", "untagged", "n1", "t1-new"]
        assert event_types(rows) == ["TaskAssigned", "TaskSucceeded"]

    async def test_an_append_that_does_not_commit_cancels_nothing(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        first = await store.append(
            "task-1", 0, [NewEvent("TaskAssigned", {})], outbox=[timer("t1", "task-1")]
        )
        with pytest.raises(ConcurrencyError):
            await store.append("task-1", 0, [NewEvent("Late", {})], cancel_timers_of=["task-1"])
        # an idempotent repeat of an append recorded before the timer cancels nothing either
        await store.append("task-2", 0, [], idempotency_key="k1")
        await store.append("task-9", None, [], idempotency_key="k1", cancel_timers_of=["task-1"])
        assert messages(await due(store)) == ["t1"]
        assert first.versions == {"task-1": 1}

    async def test_a_cancel_in_a_batch_drops_the_timers_earlier_requests_planned(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        await store.append_batch(
            [
                AppendRequest(
                    [StreamAppend("task-1", 0, [NewEvent("TaskAssigned", {})])],
                    outbox=[timer("t1-old", "task-1"), timer("t2", "task-2")],
                ),
                AppendRequest(
                    [StreamAppend("task-1", 1, [NewEvent("TaskRequeued", {})])],
                    outbox=[timer("t1-new", "task-1")],
                    cancel_timers_of=["task-1"],
                ),
            ]
        )
        assert messages(await due(store)) == ["t2", "t1-new"]

    async def test_events_nobody_subscribes_to_get_no_outbox_row(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        def publishes(category: str, event_type: str) -> bool:
            return category == "agent" or event_type in ("TaskSubmitted", "TaskSucceeded")

        store = await opened(store_url, publishes=publishes)
        await store.append(
            "task-1",
            0,
            [NewEvent(t, {}) for t in ("TaskSubmitted", "TaskAssigned", "TaskStarted")],
        )
        await store.append_many(
            [
                StreamAppend("task-1", 3, [NewEvent("TaskSucceeded", {})]),
                StreamAppend("agent-a", 0, [NewEvent("AgentJoined", {})]),
            ]
        )
        # every event is recorded; only those someone subscribes to are in the outbox
        assert len(await store.read("task-1")) == 4
        assert await store.outbox_pending() == 3
        rows = await due(store)
        assert [(r.stream, r.event.type if r.event else None) for r in rows] == [
            ("task-1", "TaskSubmitted"),
            ("task-1", "TaskSucceeded"),
            ("agent-a", "AgentJoined"),
        ]
        assert [r.event.version for r in rows if r.event] == [1, 4, 1]
