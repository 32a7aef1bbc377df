"""Placement through the candidate index decides exactly what the old scan of every agent did.

Pure, no I/O: random fleets (capabilities, capacities, running work, agents lost,
left, draining or held at an unreadable event, agents that refused a task) fed to
the projection as recorded events, then ``place`` compared with the scan it
replaced, kept here as the reference. The index kept incrementally from the first
event must also equal one built from scratch (what a restored snapshot gets).
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from contracts import (
    AgentDraining,
    AgentJoined,
    AgentLeft,
    AgentLost,
    Event,
    TaskAssigned,
    TaskRequeued,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.allocator.planning import Plan, place
from workers.allocator.projection import AgentView, Projection
from workers.registry.state import stream_of as agent_stream
from workers.runtime.messages import new_event
from workers.store import RecordedEvent

NOW = datetime(2030, 1, 1, tzinfo=UTC)
CAPS = ("a", "b", "c", "d")


class Feed:
    def __init__(self, view: Projection) -> None:
        self.view = view
        self.versions: dict[str, int] = {}

    def raw(self, stream: str, type_: str, data: dict[str, object], at: datetime = NOW) -> None:
        self.versions[stream] = self.versions.get(stream, 0) + 1
        self.view.apply(
            RecordedEvent(
                position=self.view.position + 1,
                stream=stream,
                version=self.versions[stream],
                id=uuid4(),
                type=type_,
                schema_version=1,
                data=data,
                metadata={},
                recorded_at=at,
            )
        )

    def __call__(self, stream: str, event: Event, at: datetime = NOW) -> None:
        e = new_event(event)
        self.raw(stream, e.type, dict(e.data), at)


def random_fleet(rng: random.Random, view: Projection) -> None:
    feed = Feed(view)
    agents = [f"ag{i}" for i in range(rng.randint(0, 40))]
    for agent_id in agents:
        caps = tuple(rng.sample(CAPS, rng.randint(1, 3)))
        feed(agent_stream(agent_id), AgentJoined(agent_id=agent_id, capabilities=caps,
                                                 capacity=rng.randint(1, 4)))  # fmt: skip
    tasks: list[UUID] = []
    for _ in range(rng.randint(0, 120)):
        tid = uuid4()
        tasks.append(tid)
        cap = rng.choice(CAPS)
        feed(f"task-{tid}", TaskSubmitted(submitted_at=NOW, task_id=tid, capability=cap,
                                          priority=rng.choice((0, 0, 5)), ready=True))  # fmt: skip
        if agents and rng.random() < 0.5:
            agent_id = rng.choice(agents)
            assigned = TaskAssigned(
                task_id=tid, agent_id=agent_id, attempt=1, fencing_token=1, reason="test"
            )
            feed(f"task-{tid}", assigned)
            roll = rng.random()
            if roll < 0.3:
                feed(f"task-{tid}", TaskSucceeded(task_id=tid, agent_id=agent_id, attempt=1))
            elif roll < 0.5:  # refused: avoided by this agent for a while
                when = NOW - timedelta(seconds=rng.choice((0.0, 5.0)))
                requeued = TaskRequeued(task_id=tid, attempt=1, reason="no", agent_id=agent_id)
                feed(f"task-{tid}", requeued, at=when)
    for agent_id in agents:
        roll = rng.random()
        if roll < 0.1:
            feed(agent_stream(agent_id), AgentLost(agent_id=agent_id, silent_for_s=30))
        elif roll < 0.15:
            feed(agent_stream(agent_id), AgentLeft(agent_id=agent_id))
        elif roll < 0.2:
            feed(agent_stream(agent_id), AgentDraining(agent_id=agent_id))
        elif roll < 0.25:  # a newer release's event: the agent's stream is held
            feed.raw(agent_stream(agent_id), "AgentJoined", {"agent_id": 5})
        elif roll < 0.3:
            caps = tuple(rng.sample(CAPS, rng.randint(1, 3)))
            feed(agent_stream(agent_id), AgentJoined(agent_id=agent_id, capabilities=caps,
                                                     capacity=rng.randint(1, 4)))  # fmt: skip


def scan_place(proj: Projection, now: datetime) -> tuple[dict[UUID, str], dict[UUID, str]]:
    """The placement before the index (resources aside): every agent looked at per call."""
    load = {a.agent_id: len(a.inflight) for a in proj.agents.values()}
    by_capability: dict[str, list[AgentView]] = defaultdict(list)
    for agent in proj.agents.values():
        if agent.status == "live" and agent_stream(agent.agent_id) not in proj.held:
            for capability in agent.capabilities:
                by_capability[capability].append(agent)
    placed: dict[UUID, str] = {}
    waits: dict[UUID, str] = {}
    full: set[str] = set()
    ready = sorted(
        (t for t in proj.tasks.values() if t.placeable),
        key=lambda t: (-t.task.spec.priority if t.task.spec else 0, t.seq),
    )
    for open_task in ready:
        spec = open_task.task.spec
        assert spec is not None
        able = by_capability.get(spec.capability, [])
        n = len(able)
        no_slot = (
            f"no free slot on the {n} live agent{'s' if n != 1 else ''} with {spec.capability!r}"
            if able
            else f"no live agent with {spec.capability!r}"
        )
        if spec.capability in full:
            waits[open_task.task_id] = no_slot
            continue
        candidates = [
            a
            for a in able
            if load[a.agent_id] < a.capacity
            and proj.avoid.get((open_task.task_id, a.agent_id), now) <= now
        ]
        if not candidates:
            if not any(load[a.agent_id] < a.capacity for a in able):
                full.add(spec.capability)
                waits[open_task.task_id] = no_slot
            else:
                waits[open_task.task_id] = f"refused by every free agent with {spec.capability!r}"
            continue
        best = min(
            candidates, key=lambda a: (load[a.agent_id] / a.capacity, load[a.agent_id], a.agent_id)
        )
        placed[open_task.task_id] = best.agent_id
        load[best.agent_id] += 1
    return placed, waits


def indexed_place(proj: Projection, now: datetime) -> tuple[dict[UUID, str], dict[UUID, str]]:
    plan = Plan()
    place(proj, now, plan)
    placed: dict[UUID, str] = {}
    for stream, (_, events) in plan.appends.items():
        for event in events:
            if isinstance(event, TaskAssigned):
                placed[event.task_id] = event.agent_id
        del stream
    return placed, dict(plan.waits)


@pytest.mark.parametrize("seed", range(60))
def test_index_places_as_the_scan_did(seed: int) -> None:
    rng = random.Random(seed)
    view = Projection(rejection_cooldown_s=1.0)
    view.candidates()  # kept incrementally from the first event on
    random_fleet(rng, view)
    expected = scan_place(view, NOW)
    assert indexed_place(view, NOW) == expected


@pytest.mark.parametrize("seed", range(30))
def test_incremental_index_equals_one_built_from_scratch(seed: int) -> None:
    rng = random.Random(1000 + seed)
    view = Projection()
    view.candidates()
    random_fleet(rng, view)
    kept = view.candidates()
    able, free = (
        {k: set(v) for k, v in kept.able.items()},
        {k: set(v) for k, v in kept.free.items()},
    )
    view.agents = dict(view.agents)  # as a snapshot's restore replaces it
    rebuilt = view.candidates()
    assert rebuilt is not kept
    assert (rebuilt.able, rebuilt.free) == (able, free)
