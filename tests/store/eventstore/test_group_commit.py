"""GroupCommitter: concurrent appends share transactions; each keeps its own checks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.support.fixtures.store import StoreFactory
from workers.store import (
    AppendOutcome,
    AppendRequest,
    AppendResult,
    ConcurrencyError,
    DuplicateEventId,
    EventStore,
    NewEvent,
    StoreError,
    group_commit,
)
from workers.store.group_commit import GroupCommitter


def ev(**data: object) -> NewEvent:
    return NewEvent("Happened", data)


async def test_concurrent_appends_commit_together_and_only_conflicts_fail(
    opened: StoreFactory, any_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await opened(any_store_url)
    batches: list[int] = []
    real = store.append_batch

    async def counting(requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        batches.append(len(requests))
        return await real(requests)

    monkeypatch.setattr(store, "append_batch", counting)
    committer: EventStore = GroupCommitter(store)  # a drop-in EventStore

    contested = [
        committer.append(f"task-{s}", 0, [ev(s=s, c=c)]) for s in range(10) for c in range(5)
    ]
    free = [committer.append(f"agent-{i}", None, [ev(i=i), ev(i=i)]) for i in range(30)]
    results = await asyncio.gather(*contested, *free, return_exceptions=True)

    for s in range(10):
        outcomes = results[s * 5 : s * 5 + 5]
        assert sum(isinstance(o, AppendResult) for o in outcomes) == 1
        assert sum(isinstance(o, ConcurrencyError) for o in outcomes) == 4
        assert await store.stream_version(f"task-{s}") == 1
    assert all(isinstance(o, AppendResult) for o in results[50:])
    assert await store.last_position() == 10 + 60
    assert sum(batches) == 80
    assert len(batches) < 80 / 4, f"appends were not coalesced: {batches}"
    await committer.close()


async def test_same_key_twice_in_one_batch_applies_once(
    opened: StoreFactory, any_store_url: str
) -> None:
    committer = GroupCommitter(await opened(any_store_url))
    one, two = await asyncio.gather(
        committer.append("task-1", None, [ev()], idempotency_key="m-1"),
        committer.append("task-1", None, [ev()], idempotency_key="m-1"),
    )
    assert (one.duplicate, two.duplicate) == (False, True)
    assert one.positions == two.positions
    assert await committer.stream_version("task-1") == 1
    await committer.close()


async def test_a_failing_request_does_not_sink_its_batch(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    reused = ev()
    await store.append("task-0", 0, [reused])
    committer = GroupCommitter(store)
    results = await asyncio.gather(
        committer.append("task-1", 0, [ev()]),
        committer.append("task-2", 0, [reused]),
        committer.append("task-3", 0, [ev()]),
        return_exceptions=True,
    )
    assert isinstance(results[0], AppendResult)
    assert isinstance(results[1], DuplicateEventId)
    assert isinstance(results[2], AppendResult)
    assert [await store.stream_version(f"task-{i}") for i in (1, 2, 3)] == [1, 0, 1]
    await committer.close()


async def test_an_error_while_handling_an_error_settles_every_caller_instead_of_hanging(
    opened: StoreFactory, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in CI: the log line of the retry-singly path raised (its stream was closed),
    the committer's task died, and its callers waited forever."""
    store = await opened(sqlite_url)
    reused = ev()
    await store.append("task-0", 0, [reused])

    class BrokenLog:
        def warning(self, *args: object, **kwargs: object) -> None:
            raise ValueError("I/O operation on closed file")

    monkeypatch.setattr(group_commit, "log", BrokenLog())
    committer = GroupCommitter(store)
    results = await asyncio.wait_for(
        asyncio.gather(
            committer.append("task-1", 0, [ev()]),
            committer.append("task-2", 0, [reused]),  # fails the batch: the logging path
            return_exceptions=True,
        ),
        timeout=10,
    )
    assert all(isinstance(r, StoreError) for r in results), results
    monkeypatch.undo()
    assert isinstance(await committer.append("task-9", 0, [ev()]), AppendResult)
    await committer.close()
