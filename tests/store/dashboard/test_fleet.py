"""The dashboard's views from the read models, fed hand-built histories: no broker.

Each history goes through the real tasks and agents projections into an
in-memory SQLite read-model database; the dashboard's queries read it back.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import cast
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.inspect import QueueStats
from broker.topology import Topology
from contracts import ResourceDeclared
from tests.store.dashboard.history import T0, History, HistoryStore
from tests.support.dead_letters import make_letter
from workers.dashboard import data
from workers.dashboard.fleet import SCHEMA, AgentLine, EndedSince, FleetView, read_view
from workers.dashboard.heartbeats import HeartbeatBook
from workers.dashboard.throughput import Throughput
from workers.dlq.model import DeadLetterSummary
from workers.queue_signals import fleet_queue_names
from workers.readmodels import Projection, ProjectionRunner, ReadModelDb, database_for
from workers.readmodels.agents import AgentsProjection
from workers.readmodels.tasks import TasksProjection
from workers.runtime.messages import load_event
from workers.store import EventStore, open_store
from workers.tasks.state import ACTIVE, Task, evolve


class Fed:
    """A read-model database fed from a hand-built history, as the dashboard reads it."""

    def __init__(self, db: ReadModelDb, history: History) -> None:
        self.db = db
        self.history = history
        source = cast(EventStore, HistoryStore(history))  # reads only: what a runner uses
        projections: list[Projection] = [TasksProjection(source), AgentsProjection(source)]
        self.runner = ProjectionRunner(source, projections, db=db, page=7)
        self.ended = EndedSince()
        self.throughput = Throughput()

    async def view(self) -> FleetView:
        await self.runner.start()
        await self.db.ddl(SCHEMA)
        position = await self.runner.catch_up()
        for at in await self.ended(self.db, position):
            self.throughput.add(at)
        return await read_view(self.db, position, self.runner.health())


@pytest.fixture
async def feed() -> AsyncIterator[Callable[[History], Fed]]:
    store = open_store("sqlite:///:memory:")
    await store.start()
    yield lambda history: Fed(database_for(store), history)
    await store.close()


async def project(history: History) -> tuple[FleetView, Fed]:
    store = open_store("sqlite:///:memory:")
    await store.start()
    try:
        fed = Fed(database_for(store), history)
        return await fed.view(), fed
    finally:
        await store.close()


def by_id(view: FleetView) -> dict[str, AgentLine]:
    return {line.agent_id: line for line in view.agents}


async def test_agents_carry_status_capabilities_and_the_tasks_they_hold(
    feed: Callable[[History], Fed],
) -> None:
    h = History()
    h.join("a1", capacity=4, capabilities=("crawl", "llm/summarize"))
    h.join("a2", capacity=1)
    first, second = h.submit(), h.submit()
    h.step(first, "assign", "a1")
    h.step(second, "assign", "a1")
    h.step(second, "start", "a1")
    h.lose("a2")
    fed = feed(h)
    v = await fed.view()

    a1, a2 = by_id(v)["a1"], by_id(v)["a2"]
    agent = a1.row.agent
    assert (agent.status, agent.capabilities, agent.capacity) == (
        "live",
        ("crawl", "llm/summarize"),
        4,
    )
    assert a1.load == 2
    assert a2.status == "lost"

    h.step(first, "succeed", "a1")
    h.step(second, "fail", "a1")
    assert by_id(await fed.view())["a1"].load == 0


async def test_task_counts_follow_the_lifecycle_through_a_retry(
    feed: Callable[[History], Fed],
) -> None:
    h = History()
    h.join("a1")
    h.join("a2")
    task = h.submit()
    fed = feed(h)

    async def counts() -> dict[str, int]:
        return (await fed.view()).by_state

    assert await counts() == {"pending": 1}
    h.step(task, "assign", "a1")
    h.step(task, "start", "a1")
    assert await counts() == {"running": 1}
    h.step(task, "fail", "a1")
    h.step(task, "retry", "a1")
    assert await counts() == {"failed": 1}
    assert (await fed.view()).recent[0].error == "boom"
    h.step(task, "requeue", "a1")
    assert await counts() == {"pending": 1}
    h.step(task, "assign", "a2", attempt=2)
    h.step(task, "succeed", "a2", attempt=2)
    v = await fed.view()
    assert v.by_state == {"succeeded": 1}
    assert v.open == 0
    row = v.recent[0]
    assert (row.task_id, row.state, row.agent_id, row.attempt) == (str(task), "succeeded", "a2", 2)


async def test_recent_tasks_are_the_last_changed_first_and_bounded(
    feed: Callable[[History], Fed],
) -> None:
    h = History()
    h.join("a1", capacity=10)
    tasks = [h.submit() for _ in range(5)]
    for t in tasks[:3]:
        h.step(t, "assign", "a1")
    h.step(tasks[0], "succeed", "a1")
    fed = feed(h)
    await fed.view()
    view = await read_view(fed.db, 0, (), recent=4)

    assert [r.task_id for r in view.recent] == [
        str(t) for t in (tasks[0], tasks[2], tasks[1], tasks[4])
    ]
    assert sum(view.by_state.values()) == 5  # the bound is on the list, not on the counts


async def test_an_event_it_cannot_read_stops_the_read_model_and_says_so(
    feed: Callable[[History], Fed],
) -> None:
    h = History()
    task = h.submit()
    h.add(f"task-{task}", ResourceDeclared(resource="gpu", capacity=1), type="TaskTeleported")
    h.add("resource-gpu", ResourceDeclared(resource="gpu", capacity=1))  # not its business
    h.submit()
    v = await feed(h).view()

    assert [s.name for s in v.stopped] == ["tasks"]
    assert v.by_state == {"pending": 1}  # what came before it, nothing after it
    shown = data.overview(
        now=T0,
        namespace="ns",
        refresh_s=1.0,
        store=data.StoreState("sqlite:///x.db", v.position, False),
        view=v,
        throughput=Throughput(),
        beats=HeartbeatBook(),
        queues=data.QueueSnapshot(),
        dead_letters=data.DeadLetterSnapshot(),
        topology=Topology("ns"),
    )
    assert shown["store"]["unreadable_events"] == 1
    assert "TaskTeleported" in shown["store"]["last_unreadable"]


# ---- against the tasks worker's own fold ----
# whole lifecycles; each test case cuts every one at a random step, so every state is reached
PATHS: list[list[tuple[str, str, int]]] = [
    [("assign", "a1", 1), ("start", "a1", 1), ("progress", "a1", 1), ("succeed", "a1", 1)],
    [
        ("assign", "a1", 1),
        ("start", "a1", 1),
        ("fail", "a1", 1),
        ("retry", "a1", 1),
        ("requeue", "a1", 1),
        ("assign", "a2", 2),
        ("start", "a2", 2),
        ("succeed", "a2", 2),
    ],
    [("assign", "a2", 1), ("requeue", "a2", 1), ("assign", "a1", 2), ("cancel", "a1", 2)],
    [("assign", "a1", 1), ("start", "a1", 1), ("cancel", "a1", 1)],
    [("cancel", "a1", 1)],
    [("assign", "a2", 1), ("fail", "a2", 1), ("die", "a2", 1)],
]


@settings(max_examples=25, deadline=None)
@given(
    paths=st.lists(
        st.tuples(st.integers(0, len(PATHS) - 1), st.integers(0, 8)), min_size=1, max_size=8
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_states_and_loads_match_the_tasks_fold(paths: list[tuple[int, int]], seed: int) -> None:
    h = History()
    h.join("a1", capacity=100)
    h.join("a2", capacity=100)
    steps = {uuid4(): PATHS[i][:cut] for i, cut in paths}
    for task_id in steps:
        h.submit(task_id=task_id)
    shuffle = random.Random(seed)
    pending = [t for t, s in steps.items() if s]
    while pending:  # interleave the tasks, each in its own order
        task_id = shuffle.choice(pending)
        what, agent, attempt = steps[task_id].pop(0)
        h.step(task_id, what, agent, attempt)
        if not steps[task_id]:
            pending.remove(task_id)
    v, _ = asyncio.run(project(h))

    folded: dict[UUID, Task] = {}
    for record in h.records:
        if record.category == "task":
            task_id = UUID(record.stream.removeprefix("task-"))
            folded[task_id] = evolve(folded.get(task_id) or Task(task_id), load_event(record))
    assert v.by_state == Counter(t.state for t in folded.values())
    for agent in ("a1", "a2"):
        holding = [t for t in folded.values() if t.state in ACTIVE and t.agent_id == agent]
        assert by_id(v)[agent].load == len(holding)


# ---- throughput ----
async def test_throughput_counts_tasks_ending_per_second_within_the_window(
    feed: Callable[[History], Fed],
) -> None:
    h = History()
    h.join("a1", capacity=10)
    early = h.submit()
    h.step(early, "cancel")  # ends long before the window the chart shows
    fed = feed(h)
    await fed.view()
    for second, n in ((1000, 2), (1001, 0), (1002, 3)):
        h.at(second)
        for _ in range(n):
            t = h.submit()
            h.step(t, "assign")
            h.step(t, "succeed")
        await fed.view()  # the ends are picked up a refresh at a time, each once
    h.at(1002.5)
    failing = h.submit()
    h.step(failing, "assign")
    h.step(failing, "fail")  # an attempt failing is not a task finishing
    await fed.view()
    throughput = fed.throughput

    start, counts = throughput.series(T0 + timedelta(seconds=1003), window_s=5)
    assert start == int((T0 + timedelta(seconds=999)).timestamp())
    assert counts == [0, 2, 0, 3, 0]
    assert throughput.series(T0 + timedelta(seconds=1003))[1][-5:] == [0, 2, 0, 3, 0]
    assert sum(throughput.series(T0 + timedelta(seconds=1003))[1]) == 5
    assert throughput.rate(T0 + timedelta(seconds=1003), over_s=5) == 1.0


def test_throughput_forgets_what_falls_out_of_the_window() -> None:
    t = Throughput(window_s=10)
    for second in range(100):
        t.add(T0 + timedelta(seconds=second))
    assert len(t.buckets) <= 2 * t.window_s + 1
    assert t.series(T0 + timedelta(seconds=99))[1] == [1] * 10
    t.add(T0)  # late news from long ago: nothing to show it in
    assert T0.timestamp() not in t.buckets


# ---- the JSON views ----
async def test_overview_puts_the_pieces_together(feed: Callable[[History], Fed]) -> None:
    h = History()
    h.join("a1", capacity=2)
    h.join("gone")
    h.leave("gone")
    task = h.submit(payload={"html": "<script>alert(1)</script>"})
    h.step(task, "assign", "a1")
    fed = feed(h)
    v = await fed.view()
    beats = HeartbeatBook()
    beats.record("a1", 1, T0 - timedelta(seconds=2))
    topology = Topology("ns")
    queues = data.QueueSnapshot(
        T0,
        (
            QueueStats("ns.q.tasks", 3, 2),
            QueueStats("ns.q.tasks.dlq", 4, 0),
            QueueStats("ns.inbox.a1", 0, 1),
            QueueStats("ns.inbox.a1.dlq", 0, 0, exists=False),
        ),
    )
    letters = [make_letter(n, dlq="ns.q.tasks.dlq") for n in range(4)]
    summaries = tuple(
        DeadLetterSummary(
            x.id,
            x.queue,
            x.reason,
            x.message_type,
            x.message_id,
            x.attempts,
            x.first_death_at,
            x.last_death_at,
            x.status,
            x.error,
        )
        for x in letters[:3]
    )
    counts = dict(Counter((x.queue, x.reason) for x in letters))
    dead = data.DeadLetterSnapshot(T0, counts, summaries)

    view = data.overview(
        now=T0,
        namespace="ns",
        refresh_s=1.0,
        store=data.StoreState("sqlite:///x.db", v.position, False),
        view=v,
        throughput=fed.throughput,
        beats=beats,
        queues=queues,
        dead_letters=dead,
        topology=topology,
    )

    agents = {a["agent_id"]: a for a in view["agents"]["list"]}
    assert view["agents"]["by_status"] == {"live": 1, "left": 1}
    assert (agents["a1"]["load"], agents["a1"]["reported_load"]) == (1, 1)
    assert agents["a1"]["last_heartbeat_age_s"] == 2.0
    assert agents["gone"]["last_heartbeat_at"] is None
    assert view["tasks"]["by_state"]["assigned"] == 1
    assert list(view["tasks"]["by_state"])[:3] == ["pending", "assigned", "running"]
    assert view["tasks"]["recent"][0]["task_id"] == str(task)
    assert [q["queue"] for q in view["queues"]["list"]] == [
        "ns.q.tasks",
        "ns.q.tasks.dlq",
        "ns.inbox.a1",
    ]
    assert [q["kind"] for q in view["queues"]["list"]] == ["worker", "dlq", "inbox"]
    reasons = {r["reason"]: r for r in view["dead_letters"]["by_reason"]}
    assert {r: e["count"] for r, e in reasons.items()} == {"invalid": 2, "handler_error": 2}
    invalid_ids = [x["id"] for x in reasons["invalid"]["letters"]]
    assert invalid_ids == [letters[0].id]  # the fourth is counted but not among the newest three
    assert reasons["invalid"]["letters"][0]["href"] == f"/api/deadletters/{letters[0].id}"
    assert view["dead_letters"]["total"] == 4
    assert view["dead_letters"]["waiting_in_queues"] == 4


async def test_the_queues_watched_are_the_ones_rally_status_reports(
    feed: Callable[[History], Fed],
) -> None:
    h = History()
    h.join("a1")
    h.join("a2")
    h.leave("a2")
    v = await feed(h).view()
    present = [line.agent_id for line in v.agents if line.status != "left"]
    names = fleet_queue_names(Topology("ns"), present, shards=2)
    assert names == [
        "ns.q.registry",
        "ns.q.registry.dlq",
        "ns.q.registry.1",
        "ns.q.registry.1.dlq",
        "ns.q.tasks",
        "ns.q.tasks.dlq",
        "ns.q.allocator",
        "ns.q.allocator.dlq",
        "ns.inbox.a1",
        "ns.inbox.a1.dlq",  # an inbox of an earlier release has its own
        "ns.inboxes.dlq",
        "ns.clients.dlq",
    ]


def test_the_heartbeat_book_forgets_the_longest_silent_past_its_bound() -> None:
    book = HeartbeatBook(max_agents=2)
    book.record("a", 0, T0)
    book.record("b", 1, T0)
    book.record("a", 2, T0 + timedelta(seconds=1))
    book.record("c", 0, T0)
    assert book.get("b") is None
    beat = book.get("a")
    assert beat is not None
    assert beat.load == 2
    assert len(book) == 2
