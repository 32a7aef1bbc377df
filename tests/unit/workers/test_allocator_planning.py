"""Placement and leases, without a broker: the projection fed recorded events by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from contracts import (
    AcquireLease,
    AgentJoined,
    AgentLost,
    DeclareResource,
    Event,
    LeaseGranted,
    ResourceDeclared,
    TaskAssigned,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.allocator.planning import (
    Plan,
    grant_waiters,
    on_commands,
    orphaned,
    place,
    settle_leases,
)
from workers.allocator.projection import Projection
from workers.runtime.messages import new_event
from workers.store import RecordedEvent

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class Feed:
    def __init__(self) -> None:
        self.view = Projection()
        self.versions: dict[str, int] = {}

    def __call__(self, stream: str, *events: Event) -> None:
        for event in events:
            self.versions[stream] = self.versions.get(stream, 0) + 1
            e = new_event(event)
            self.view.apply(
                RecordedEvent(
                    position=self.view.position + 1,
                    stream=stream,
                    version=self.versions[stream],
                    id=e.id,
                    type=e.type,
                    schema_version=1,
                    data=dict(e.data),
                    metadata={},
                    recorded_at=NOW,
                )
            )

    def agent(self, agent_id: str, capacity: int, *caps: str) -> None:
        self(
            f"agent-{agent_id}",
            AgentJoined(agent_id=agent_id, capabilities=caps, capacity=capacity),
        )

    def task(
        self, capability: str = "c", priority: int = 0, resources: tuple[str, ...] = ()
    ) -> UUID:
        tid = uuid4()
        self(
            f"task-{tid}",
            TaskSubmitted(
                submitted_at=NOW,
                task_id=tid,
                capability=capability,
                priority=priority,
                resources=resources,
                ready=True,
            ),
        )
        return tid

    def commit(self, plan: Plan) -> None:
        """Record the plan as the store would (each stream's events in order)."""
        for stream, (_, events) in plan.appends.items():
            self(stream, *events)


def assignments(plan: Plan) -> list[TaskAssigned]:
    return [e for _, events in plan.appends.values() for e in events if isinstance(e, TaskAssigned)]


def test_priority_first_then_first_come_and_never_over_capacity() -> None:
    feed = Feed()
    feed.agent("a", 2, "c")
    low = feed.task(priority=0)
    high1 = feed.task(priority=5)
    high2 = feed.task(priority=5)
    plan = Plan()
    place(feed.view, NOW, plan)
    assert [a.task_id for a in assignments(plan)] == [high1, high2]
    feed.commit(plan)
    plan = Plan()
    place(feed.view, NOW, plan)
    assert assignments(plan) == []  # full
    feed(f"task-{high1}", TaskSucceeded(task_id=high1, agent_id="a", attempt=1))
    plan = Plan()
    place(feed.view, NOW, plan)
    assert [a.task_id for a in assignments(plan)] == [low]


def test_least_loaded_agent_with_the_capability_and_the_fencing_token() -> None:
    feed = Feed()
    feed.agent("busy", 4, "c")
    feed.agent("idle", 4, "c")
    feed.agent("other", 9, "d")
    feed.commit(_placed(feed, feed.task()))  # goes to "busy" (tie broken by id)
    tid = feed.task()
    plan = Plan()
    place(feed.view, NOW, plan)
    (assigned,) = assignments(plan)
    assert assigned.agent_id == "idle"
    assert assigned.reason == "least loaded of 2 agents with 'c' (0/4 busy)"
    assert assigned.fencing_token == 2
    assert assigned.task_id == tid


def _placed(feed: Feed, tid: UUID) -> Plan:
    plan = Plan()
    place(feed.view, NOW, plan)
    assert [a.task_id for a in assignments(plan)] == [tid]
    return plan


def test_resource_capacity_two_is_never_exceeded() -> None:
    feed = Feed()
    feed.agent("a", 10, "c")
    feed("resource-gpu", ResourceDeclared(resource="gpu", capacity=2))
    tasks = [feed.task(resources=("gpu",)) for _ in range(3)]
    plan = Plan()
    place(feed.view, NOW, plan)
    assert [a.task_id for a in assignments(plan)] == tasks[:2]
    grants = [e for e in plan.appends["resource-gpu"][1] if isinstance(e, LeaseGranted)]
    assert [g.fencing_token for g in grants] == [2, 3]  # the resource stream's versions
    feed.commit(plan)
    plan = Plan()
    place(feed.view, NOW, plan)
    assert assignments(plan) == []
    feed(f"task-{tasks[0]}", TaskSucceeded(task_id=tasks[0], agent_id="a", attempt=1))
    plan = Plan()
    settle_leases(feed.view, NOW, plan)  # the ended task's lease is released first
    place(feed.view, NOW, plan)
    assert [a.task_id for a in assignments(plan)] == [tasks[2]]


def test_direct_leases_fifo_ttl_and_lost_holder() -> None:
    feed = Feed()
    feed.agent("a", 1, "c")
    feed.agent("b", 1, "c")
    plan = Plan()
    first, second = uuid4(), uuid4()
    on_commands(
        feed.view,
        [
            DeclareResource(resource="r", capacity=1),
            AcquireLease(resource="r", agent_id="a", lease_id=first, ttl_s=5),
            AcquireLease(resource="r", agent_id="b", lease_id=second, ttl_s=5),
        ],
        NOW,
        plan,
    )
    feed.commit(plan)
    plan = Plan()
    grant_waiters(feed.view, NOW, plan)
    (granted,) = [e for e in plan.appends["resource-r"][1] if isinstance(e, LeaseGranted)]
    assert granted.lease_id == first
    feed.commit(plan)
    plan = Plan()
    settle_leases(feed.view, NOW + timedelta(seconds=6), plan)  # not renewed: expires
    grant_waiters(feed.view, NOW + timedelta(seconds=6), plan)
    assert [type(e).__name__ for e in plan.appends["resource-r"][1]] == [
        "LeaseExpired",
        "LeaseGranted",
    ]
    feed.commit(plan)
    feed("agent-b", AgentLost(agent_id="b", silent_for_s=3))
    plan = Plan()
    settle_leases(feed.view, NOW, plan)
    (expired,) = plan.appends["resource-r"][1]
    assert expired.reason == "agent b lost"  # type: ignore[attr-defined]


def test_tasks_of_a_lost_agent_are_orphaned() -> None:
    feed = Feed()
    feed.agent("a", 1, "c")
    tid = feed.task()
    feed.commit(_placed(feed, tid))
    assert orphaned(feed.view) == []
    feed("agent-a", AgentLost(agent_id="a", silent_for_s=3))
    assert orphaned(feed.view) == [(tid, "a", "agent a lost")]
