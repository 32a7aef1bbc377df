"""Start-up from a snapshot plus the tail builds exactly what a full replay builds (both
stores); a snapshot of another format is ignored; an event the allocator cannot decode
holds its stream visibly and is taken again once it reads. No broker: the store only."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from contracts import (
    AgentJoined,
    LeaseRequested,
    TaskReady,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from tests.support.recorded import (
    NOW,
    Fact,
    assigned,
    declared,
    granted,
    history,
    joined,
    lost,
    released,
    submitted,
    succeeded,
    through_store,
)
from workers.allocator.follow import SNAPSHOT_NAME, ViewKeeper, snapshot_state
from workers.allocator.holds import read_holds
from workers.allocator.projection import RESOURCE_PREFIX, Projection
from workers.registry.follow import AgentFollower
from workers.registry.state import Agent, fold
from workers.runtime.messages import load_event, new_event
from workers.runtime.metrics import PlacementMetrics
from workers.store.base import EventStore, NewEvent, RecordedEvent
from workers.tasks import state as tasks


def keeper(store: EventStore, view: Projection | None = None) -> ViewKeeper:
    view = view or Projection(rejection_cooldown_s=1.0)
    return ViewKeeper(store, view, PlacementMetrics("test"), replica="test")


def rich_history() -> list[Fact]:
    """Agents, open and ended tasks, a refusal's cool-down, resources with holders and a
    waiter: every part of the view."""
    t1, t2, t3, t4 = (uuid4() for _ in range(4))
    lease, waiter = uuid4(), uuid4()
    labelled = AgentJoined(agent_id="b", capabilities=("x", "y"), capacity=3, labels={"z": "1"})
    facts: list[Fact] = [
        joined("a", capacity=2),
        ("agent-b", labelled),
        submitted(t1),
        submitted(t2),
        assigned(t1, "a"),
        (tasks.stream_of(t1), TaskStarted(task_id=t1, agent_id="a", attempt=1, deadline=NOW)),
        assigned(t2, "b"),
        (tasks.stream_of(t2), TaskRequeued(task_id=t2, attempt=1, reason="no", agent_id="b")),
        declared("gpu", 2),
        granted("gpu", lease, "a"),
        (
            RESOURCE_PREFIX + "gpu",
            LeaseRequested(resource="gpu", lease_id=waiter, agent_id="b", ttl_s=5.0),
        ),
        submitted(t3),
        assigned(t3, "a"),
        succeeded(t3, "a"),
        released("gpu", lease, "a"),
        submitted(t4),
        lost("b"),
    ]
    return facts


async def record_all(store: EventStore, facts: list[Fact]) -> list[RecordedEvent]:
    return await through_store(store, history(*facts))


@pytest.fixture
def store(any_store: EventStore) -> EventStore:
    return any_store  # a started store of each adapter (tests/support/fixtures/store.py)


async def test_snapshot_plus_tail_equals_full_replay_at_every_split(store: EventStore) -> None:
    records = await record_all(store, rich_history())
    full = keeper(store)
    await full.catch_up()
    assert full.view.tasks
    assert full.view.avoid
    assert full.view.resources["gpu"].waiters
    for split in (0, 1, 5, 9, 12, len(records) - 1, len(records)):  # snapshots only move on
        first = keeper(store)
        first.apply(records[:split])
        await first.save()
        second = keeper(store)
        tail = await second.start()
        assert tail == len(records) - split
        assert second.view.position == full.view.position
        assert snapshot_state(second.view) == snapshot_state(full.view), split


async def test_a_snapshot_of_another_format_or_unreadable_is_ignored(store: EventStore) -> None:
    records = await record_all(store, rich_history())
    position = records[-1].position
    await store.save_snapshot(SNAPSHOT_NAME, position, {"format": "0:old", "state": {}})
    replayed = keeper(store)
    assert await replayed.start() == len(records)  # a full replay, not an empty view
    broken = {"format": replayed_format(), "state": {"tasks": {"$nonsense": 1}}}
    await store.save_snapshot(SNAPSHOT_NAME, position, broken)
    again = keeper(store)
    assert await again.start() == len(records)
    assert snapshot_state(again.view) == snapshot_state(replayed.view)


def replayed_format() -> str:
    from workers.allocator.follow import CODEC

    return CODEC.format


async def unreadable(store: EventStore, task_id: UUID) -> RecordedEvent:
    """A TaskReady of a version this code does not read, as a newer release writes it."""
    event = new_event(TaskReady(task_id=task_id))
    new = NewEvent(type=event.type, data=event.data, schema_version=2)
    result = await store.append(tasks.stream_of(task_id), None, [new])
    return result.events[0] if result.events else (await store.read_all(0, 10_000))[-1]


def waiting(task_id: UUID) -> Fact:
    return tasks.stream_of(task_id), TaskSubmitted(
        submitted_at=NOW, task_id=task_id, capability="x", ready=False
    )


async def test_an_unreadable_event_holds_its_task_visibly_and_resumes_once_it_reads(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked, other = uuid4(), uuid4()
    await record_all(store, [joined("a"), waiting(blocked)])
    bad = await unreadable(store, blocked)
    later = await store.append(tasks.stream_of(other), None, [new_event(submitted(other)[1])])

    old = keeper(store)
    await old.start()
    # not skipped silently: held at that event, with the reason; the rest goes on
    held = old.view.held[tasks.stream_of(blocked)]
    assert (held.position, held.type, held.schema_version) == (bad.position, "TaskReady", 2)
    assert "newer than this code reads" in held.reason
    assert blocked not in old.view.tasks
    assert blocked in old.view.held_tasks
    assert old.view.tasks[other].placeable
    assert old.view.position == later.positions[-1]
    shown = await read_holds(store)
    assert [(h["stream"], h["position"]) for h in shown] == [(held.stream, bad.position)]
    await old.save()  # the hold survives a restart

    monkeypatch.setattr(TaskReady, "version", 2)  # the fix: a release that reads version 2
    new = keeper(store)
    await new.start()
    assert new.view.held == {}
    assert new.view.held_tasks == {}
    assert new.view.tasks[blocked].placeable
    assert await read_holds(store) == []
    full = keeper(store)
    full.apply(await store.read_all(0, 10_000))  # what a full replay with the fix builds
    assert snapshot_state(new.view) == snapshot_state(full.view)


async def test_a_held_task_that_ends_lets_its_hold_go(store: EventStore) -> None:
    blocked = uuid4()
    await record_all(store, [waiting(blocked)])
    await unreadable(store, blocked)
    view = keeper(store)
    await view.start()
    assert view.view.held
    ended = succeeded(blocked)[1]
    await store.append(tasks.stream_of(blocked), None, [new_event(ended)])
    await view.catch_up()
    assert view.view.held == {}
    assert view.view.held_tasks == {}
    assert await read_holds(store) == []


async def test_registry_snapshot_plus_agent_tail_equals_the_fold(store: EventStore) -> None:
    facts = rich_history()
    records = await record_all(store, facts)
    first = AgentFollower(store, {})
    await first.start()
    await first.save()
    more = [joined("c", capacity=4), joined("b", capacity=1), lost("a")]
    await record_all(store, more)
    # unrelated events after the agents' last: the next read starts past them
    await store.append(tasks.stream_of(uuid4()), None, [new_event(submitted(uuid4())[1])])
    second = AgentFollower(store, {})
    moved = await second.start()
    assert moved == {"a", "b", "c"}
    by_agent: dict[str, list[RecordedEvent]] = {}
    for record in await store.read_all(0, 10_000):
        if record.stream.startswith("agent-"):
            by_agent.setdefault(record.stream.removeprefix("agent-"), []).append(record)
    expected = {a: fold(a, [load_event(r) for r in rs]) for a, rs in by_agent.items()}
    assert second.agents == expected
    assert second.position == await store.last_position() > records[-1].position
    assert await second.catch_up() == set()  # nothing new: nothing read again
    assert all(isinstance(a, Agent) for a in second.agents.values())
