"""The event store contract: one test body, run against every adapter.

Subclasses provide ``store_url``; everything else comes from here. A new
adapter passes this class or it is not an adapter.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from datetime import UTC, timedelta

import pytest

from tests.store.eventstore.contract_outbox import OutboxContract
from tests.store.eventstore.race_worker import race
from tests.support.fixtures.store import StoreFactory
from workers.store import (
    ConcurrencyError,
    DuplicateEventId,
    Metadata,
    NewEvent,
    OutboxMessage,
    RecordedEvent,
    StreamAppend,
    open_store,
)


def ev(type_: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(type_, data)


class EventStoreContract(OutboxContract):
    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    async def test_append_then_read(self, opened: StoreFactory, store_url: str) -> None:
        store = await opened(store_url)
        meta = Metadata(message_id="m1", correlation_id="c1", sender="agent-a", worker="tasks")
        first, second = ev("TaskSubmitted", n=1), ev("TaskAssigned", n=2)
        result = await store.append("task-1", 0, [first, second], metadata=meta)
        assert result.positions == (1, 2)
        assert result.versions == {"task-1": 2}
        assert not result.duplicate

        events = await store.read("task-1")
        assert [(e.version, e.type, e.data) for e in events] == [
            (1, "TaskSubmitted", {"n": 1}),
            (2, "TaskAssigned", {"n": 2}),
        ]
        assert [e.id for e in events] == [first.id, second.id]
        assert events[0].metadata["message_id"] == "m1"
        assert events[0].metadata["sender"] == "agent-a"
        assert events[0].metadata["causation_id"] is None
        assert events[0].recorded_at.tzinfo is not None
        assert events[0].recorded_at.utcoffset() == UTC.utcoffset(None)
        assert events[0].schema_version == 1
        assert [e.version for e in await store.read("task-1", from_version=2)] == [2]
        assert await store.read("task-nope") == []

    async def test_stream_version(self, opened: StoreFactory, store_url: str) -> None:
        store = await opened(store_url)
        assert await store.stream_version("agent-a1") == 0
        await store.append("agent-a1", None, [ev(), ev(), ev()])
        assert await store.stream_version("agent-a1") == 3
        await store.append("agent-a1", 3, [ev()])
        assert await store.stream_version("agent-a1") == 4

    async def test_wrong_expected_version_conflicts_and_writes_nothing(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        await store.append("task-1", 0, [ev(), ev()])
        with pytest.raises(ConcurrencyError) as info:
            await store.append("task-1", 1, [ev("Late")])
        assert (info.value.stream, info.value.expected, info.value.actual) == ("task-1", 1, 2)
        assert [e.type for e in await store.read("task-1")] == ["Happened", "Happened"]
        assert await store.last_position() == 2

    async def test_expected_zero_on_existing_stream_conflicts(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        await store.append("resource-gpu", 0, [ev()])
        with pytest.raises(ConcurrencyError):
            await store.append("resource-gpu", 0, [ev()])
        assert await store.stream_version("resource-gpu") == 1

    async def test_expected_version_on_missing_stream_conflicts(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        with pytest.raises(ConcurrencyError):
            await store.append("task-new", 3, [ev()])

    async def test_append_many_is_atomic_across_streams(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        await store.append("agent-a", 0, [ev()])
        result = await store.append_many(
            [
                StreamAppend("task-1", 0, [ev("TaskAssigned")]),
                StreamAppend("agent-a", 1, [ev("AgentBusy"), ev("AgentBusier")]),
            ]
        )
        assert result.positions == (2, 3, 4)
        assert result.versions == {"task-1": 1, "agent-a": 3}

        with pytest.raises(ConcurrencyError) as info:
            await store.append_many(
                [
                    StreamAppend("task-2", 0, [ev("TaskAssigned")]),
                    StreamAppend("agent-a", 1, [ev("Stale")]),  # actual is 3
                ]
            )
        assert info.value.stream == "agent-a"
        assert await store.stream_version("task-2") == 0
        assert await store.last_position() == 4

    async def test_idempotency_key_applies_once(self, opened: StoreFactory, store_url: str) -> None:
        store = await opened(store_url)
        first = await store.append("task-1", 0, [ev()], idempotency_key="msg-1")
        await store.append("task-1", 1, [ev("Other")])
        again = await store.append("task-1", 0, [ev()], idempotency_key="msg-1")
        assert not first.duplicate
        assert again.duplicate
        assert (again.positions, again.versions) == (first.positions, first.versions)
        assert await store.stream_version("task-1") == 2

    async def test_idempotency_holds_under_concurrency(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        # Two stores = two connections, as two replicas would have.
        one, two = await opened(store_url), await opened(store_url)
        for round_ in range(5):
            key = f"msg-{round_}"
            results = await asyncio.gather(
                one.append("task-1", None, [ev(r=round_)], idempotency_key=key),
                two.append("task-1", None, [ev(r=round_)], idempotency_key=key),
            )
            assert sorted(r.duplicate for r in results) == [False, True]
            assert results[0].positions == results[1].positions
        assert [e.data["r"] for e in await one.read("task-1")] == [0, 1, 2, 3, 4]

    async def test_pruned_keys_are_forgotten(self, opened: StoreFactory, store_url: str) -> None:
        store = await opened(store_url)
        await store.append("task-1", None, [ev()], idempotency_key="old")
        assert await store.prune_processed(timedelta(days=1)) == 0
        assert await store.prune_processed(timedelta(0)) == 1
        again = await store.append("task-1", None, [ev()], idempotency_key="old")
        assert not again.duplicate
        assert await store.stream_version("task-1") == 2

    async def test_duplicate_event_id_is_refused(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        event = ev()
        await store.append("task-1", 0, [event])
        with pytest.raises(DuplicateEventId):
            await store.append("task-2", 0, [event])
        assert await store.stream_version("task-2") == 0

    async def test_read_all_in_position_order_with_prefix(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        for i in range(5):
            await store.append(f"task-{i}", 0, [ev(i=i)])
            await store.append("agent-a", None, [ev(i=i)])
        everything = await store.read_all()
        assert [e.position for e in everything] == list(range(1, 11))
        assert await store.last_position() == 10

        page = await store.read_all(3, limit=4)
        assert [e.position for e in page] == [4, 5, 6, 7]

        tasks = await store.read_all(0, stream_prefix="task-")
        assert [e.stream for e in tasks] == [f"task-{i}" for i in range(5)]
        assert [e.position for e in tasks] == [1, 3, 5, 7, 9]
        assert [e.position for e in await store.read_all(5, stream_prefix="agent")] == [6, 8, 10]
        # A prefix is literal: SQL wildcards in it match only themselves.
        assert await store.read_all(0, stream_prefix="task_") == []
        assert await store.read_all(0, stream_prefix="TASK-") == []

    async def test_snapshots(self, opened: StoreFactory, store_url: str) -> None:
        store = await opened(store_url)
        assert await store.load_snapshot("task-1") is None
        await store.save_snapshot("task-1", 10, {"status": "running", "attempts": 2})
        assert await store.load_snapshot("task-1") == (10, {"status": "running", "attempts": 2})
        await store.save_snapshot("task-1", 12, {"status": "succeeded"})
        await store.save_snapshot("task-1", 11, {"status": "stale"})  # older: ignored
        assert await store.load_snapshot("task-1") == (12, {"status": "succeeded"})

    async def test_schema_migration_is_idempotent(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        await store.append("task-1", 0, [ev()])
        version = await store.schema_version()
        await store.close()
        # Restarting, and two stores starting at once, migrate nothing twice.
        again, also = await asyncio.gather(opened(store_url), opened(store_url))
        assert await again.schema_version() == version >= 1
        assert [e.version for e in await also.read("task-1")] == [1]

    async def test_outbox_rows_written_with_events(
        self, opened: StoreFactory, store_url: str
    ) -> None:
        store = await opened(store_url)
        message = OutboxMessage("inbox", "agent.a1", b'{"go":1}', "notice-1", {"h": "v"})
        await store.append("task-1", 0, [ev(), ev()], outbox=[message])
        with pytest.raises(ConcurrencyError):
            await store.append("task-1", 0, [ev()], outbox=[message])
        assert await store.outbox_pending() == 3
        rows = await store.outbox_claim_due("test", 10, 30.0)
        assert [r.event.version if r.event else None for r in rows] == [1, 2, None]
        assert rows[2].message is not None
        assert rows[2].message.body == b'{"go":1}'
        assert dict(rows[2].message.headers) == {"h": "v"}
        assert await store.outbox_claim_due("test", 10, 30.0) == []  # claimed
        await store.outbox_done([r.id for r in rows])
        assert await store.outbox_pending() == 0

    @pytest.mark.timeout(60)
    def test_four_processes_race_on_one_stream(self, store_url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        processes, per_process = 4, 25
        stream = f"task-race-{uuid.uuid4().hex[:6]}"
        barrier = ctx.Barrier(processes)
        procs = [
            ctx.Process(target=race, args=(store_url, p, per_process, stream, barrier))
            for p in range(processes)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(50)
        assert [p.exitcode for p in procs] == [0] * processes

        events = asyncio.run(_read(store_url, stream))
        assert [e.version for e in events] == list(range(1, processes * per_process + 1))
        seen = sorted((e.data["proc"], e.data["i"]) for e in events)
        assert seen == [(p, i) for p in range(processes) for i in range(per_process)]
        # The test proves something only if the processes really collided.
        conflicts = sum(e.data["attempt"] - 1 for e in events)
        assert conflicts > 0, "no append ever conflicted: the race did not happen"


async def _read(url: str, stream: str) -> list[RecordedEvent]:
    store = open_store(url)
    await store.start()
    try:
        return await store.read(stream)
    finally:
        await store.close()
