"""Placement through the index's order decides what the scan of every free agent did.

Pure, no I/O. Random fleets over several decisions: each decision is compared with
the scan it replaced (kept here as the reference: every free agent of the task's
capability looked at, the least loaded taken) — the agent, the reason recorded in
``TaskAssigned`` and every wait reason. Between decisions the plan is either applied
as the allocator applies its own appends, or thrown away as a conflicting append
is, and agents finish, refuse, join and go, so the index's heaps, their stale
entries and the shelf of one decision are all exercised.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from contracts import (
    AgentJoined,
    AgentLost,
    Event,
    TaskAssigned,
    TaskRequeued,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.allocator.candidates import CandidateIndex, order_key
from workers.allocator.planning import Plan, place
from workers.allocator.projection import Projection
from workers.registry.state import stream_of as agent_stream
from workers.runtime.messages import new_event
from workers.store import RecordedEvent

NOW = datetime(2030, 1, 1, tzinfo=UTC)
CAPS = ("a", "b", "c")


class Feed:
    def __init__(self, view: Projection) -> None:
        self.view = view
        self.versions: dict[str, int] = defaultdict(int)

    def __call__(self, stream: str, event: Event, at: datetime = NOW) -> None:
        self.versions[stream] += 1
        e = new_event(event)
        record = RecordedEvent(
            position=self.view.position + 1,
            stream=stream,
            version=self.versions[stream],
            id=uuid4(),
            type=e.type,
            schema_version=1,
            data=dict(e.data),
            metadata={},
            recorded_at=at,
        )
        self.view.apply(record)


def scan(view: Projection, now: datetime) -> tuple[dict[UUID, tuple[str, str]], dict[UUID, str]]:
    """The placement before the order was kept: every free agent looked at, per task."""
    index = view.candidates()
    placed_now: dict[str, int] = defaultdict(int)
    placed: dict[UUID, tuple[str, str]] = {}
    waits: dict[UUID, str] = {}
    full: set[str] = set()

    def load(agent_id: str) -> int:
        return len(view.agents[agent_id].inflight) + placed_now[agent_id]

    ready = sorted(
        (t for t in view.tasks.values() if t.placeable),
        key=lambda t: (-t.task.spec.priority if t.task.spec else 0, t.seq),
    )
    for open_task in ready:
        spec, tid = open_task.task.spec, open_task.task_id
        assert spec is not None
        cap, able = spec.capability, index.able_count(spec.capability)
        no_slot = (
            f"no free slot on the {able} live agent{'s' if able != 1 else ''} with {cap!r}"
            if able
            else f"no live agent with {cap!r}"
        )
        if cap in full:
            waits[tid] = no_slot
            continue
        free = [a for a in index.free_of(cap) if load(a) < view.agents[a].capacity]
        candidates = [a for a in free if view.avoid.get((tid, a), now) <= now]
        if not candidates:
            if not free:
                full.add(cap)
                waits[tid] = no_slot
            else:
                waits[tid] = f"refused by every free agent with {cap!r}"
            continue
        best = min(candidates, key=lambda a: (load(a) / view.agents[a].capacity, load(a), a))
        n = len(candidates)
        reason = (
            f"least loaded of {n} agent{'s' if n != 1 else ''} with {cap!r} "
            f"({load(best)}/{view.agents[best].capacity} busy)"
        )
        placed[tid] = (best, reason)
        placed_now[best] += 1
    return placed, waits


def ordered(view: Projection, now: datetime) -> tuple[Plan, dict[UUID, tuple[str, str]]]:
    plan = Plan()
    place(view, now, plan)
    placed = {
        e.task_id: (e.agent_id, e.reason)
        for _, events in plan.appends.values()
        for e in events
        if isinstance(e, TaskAssigned)
    }
    return plan, placed


def churn(rng: random.Random, view: Projection, feed: Feed, agents: list[str]) -> None:
    """Between decisions: work ends or is refused, agents join, change or are lost; tasks come."""
    for open_task in list(view.tasks.values()):
        task = open_task.task
        if task.state == "assigned" and task.agent_id is not None and rng.random() < 0.3:
            if rng.random() < 0.7:
                done = TaskSucceeded(task_id=task.task_id, agent_id=task.agent_id, attempt=1)
                feed(f"task-{task.task_id}", done)
            else:  # refused: that agent is avoided for this task a while
                back = TaskRequeued(
                    task_id=task.task_id, attempt=task.attempt, reason="no", agent_id=task.agent_id
                )
                feed(f"task-{task.task_id}", back, at=NOW - timedelta(seconds=rng.choice((0, 5))))
    for _ in range(rng.randint(0, 3)):
        agent_id = f"ag{len(agents)}" if rng.random() < 0.6 or not agents else rng.choice(agents)
        if agent_id not in agents:
            agents.append(agent_id)
        caps = tuple(rng.sample(CAPS, rng.randint(1, 2)))
        joined = AgentJoined(agent_id=agent_id, capabilities=caps, capacity=rng.randint(1, 4))
        feed(agent_stream(agent_id), joined)
    if agents and rng.random() < 0.2:
        lost = rng.choice(agents)
        feed(agent_stream(lost), AgentLost(agent_id=lost, silent_for_s=30))
    for _ in range(rng.randint(0, 25)):
        tid = uuid4()
        submitted = TaskSubmitted(
            submitted_at=NOW,
            task_id=tid,
            capability=rng.choice(CAPS),
            priority=rng.choice((0, 0, 5)),
            ready=True,
        )
        feed(f"task-{tid}", submitted)


@pytest.mark.parametrize("seed", range(40))
def test_ordered_placement_decides_as_the_scan_over_many_decisions(seed: int) -> None:
    rng = random.Random(seed)
    view = Projection(rejection_cooldown_s=1.0)
    feed = Feed(view)
    agents: list[str] = []
    for _ in range(rng.randint(1, 8)):
        churn(rng, view, feed, agents)
    for _ in range(12):
        expected_placed, expected_waits = scan(view, NOW)
        plan, placed = ordered(view, NOW)
        assert placed == expected_placed
        assert {t: view.waits.get(t) for t in expected_waits} == expected_waits
        if rng.random() < 0.7:  # appended, and applied as the allocator applies its own
            for stream, (_, events) in plan.appends.items():
                for event in events:
                    feed(stream, event)
        # else: the append conflicted: the view is as it was, and so must the index be
        churn(rng, view, feed, agents)


def test_a_plan_thrown_away_leaves_the_order_as_it_was() -> None:
    view = Projection()
    feed = Feed(view)
    for i in range(30):
        feed(agent_stream(f"ag{i}"), AgentJoined(agent_id=f"ag{i}", capabilities=("a",),
                                                 capacity=2))  # fmt: skip
    for _ in range(45):
        tid = uuid4()
        feed(f"task-{tid}", TaskSubmitted(submitted_at=NOW, task_id=tid, capability="a",
                                          ready=True))  # fmt: skip
    _, first = ordered(view, NOW)  # thrown away: never applied
    _, again = ordered(view, NOW)
    assert again == first
    # every agent gets one before any gets two
    assert sorted(Counter(a for a, _ in first.values()).values()) == [1] * 15 + [2] * 15


def test_pick_skips_refused_agents_and_drops_stale_entries() -> None:
    index = CandidateIndex()
    for i, load in enumerate((2, 0, 1, 0)):
        index.update(f"g{i}", ("x",), placeable=True, has_slot=True, load=load, capacity=4)
    keys = {f"g{i}": order_key(f"g{i}", load, 4) for i, load in enumerate((2, 0, 1, 0))}
    shelf: list[tuple[str, tuple[float, int, str]]] = []
    assert index.pick("x", keys.get, {"g1"}, shelf) == "g3"
    keys["g3"] = order_key("g3", 3, 4)  # this decision placed on it
    index.moved("g3", keys["g3"])
    assert index.pick("x", keys.get, {"g1"}, shelf) == "g2"
    assert shelf == [("x", order_key("g3", 0, 4))]  # the view's entry, kept for a throw-away
    index.restore(shelf)
    index.update("g1", ("x",), placeable=False, has_slot=False)  # lost
    for _ in range(200):  # the same agent moving back and forth: old entries pile up
        index.update("g0", ("x",), placeable=True, has_slot=True, load=1, capacity=4)
        index.update("g0", ("x",), placeable=True, has_slot=True, load=2, capacity=4)
    assert len(index._heaps["x"]) <= 2 * 3 + 64  # compacted
    fresh = {a: order_key(a, n, 4) for a, n in (("g0", 2), ("g2", 1), ("g3", 0))}
    assert index.pick("x", fresh.get, set(), []) == "g3"
