"""Three replicas of every worker, a fleet of scripted agents, one killed mid-run: the history
must still show one terminal state per task, no agent and no resource over capacity, and every
task of the killed agent placed again."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter, defaultdict
from typing import Any
from uuid import UUID

import pytest

from broker.connection import BrokerConnection
from contracts import (
    AssignTask,
    Backoff,
    DeclareResource,
    SubmitTask,
    TaskAssigned,
    TaskOutcome,
)
from tests.broker.workers.invariants import peak_agent_load, peak_resource_use
from tests.support.agent import Inbox, ScriptedAgent
from workers.runtime.messages import load_event
from workers.runtime.services import run_services
from workers.runtime.settings import WorkerSettings

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TERMINAL = {"TaskSucceeded", "TaskCancelled", "TaskDead"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """Both stores: replicas in separate connections meet only in the store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/rally.db"
    return str(request.getfixturevalue("pg_url"))


async def test_three_replicas_of_everything_with_a_killed_agent(
    broker: BrokerConnection, worker_settings: WorkerSettings, agents: Any, client: Inbox
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        fleets = [
            await stack.enter_async_context(
                run_services(worker_settings, workers=["all"], replica=str(i))
            )
            for i in range(3)
        ]
        store: Any = fleets[0].store
        rng = random.Random(7)

        async def work(agent: ScriptedAgent, task: AssignTask) -> None:
            await agent.report(task, "started")
            await asyncio.sleep(rng.uniform(0.005, 0.05))
            if task.payload == "poison":
                await agent.report(task, "failed", error="always fails")
            else:
                await agent.report(task, "succeeded", result=task.attempt)

        async def die(agent: ScriptedAgent, task: AssignTask) -> None:
            await agent.report(task, "started")
            await asyncio.Event().wait()  # never finishes: it is about to be killed

        await client.publisher.send(DeclareResource(resource="gpu", capacity=2))  # type: ignore[attr-defined]
        for i in range(4):
            caps = ("a", "b") if i % 2 else ("a",)
            await agents(f"w{i}", capabilities=caps, capacity=3, work=work, heartbeat_s=0.25)
        victim = await agents(
            "victim", capabilities=("a", "b"), capacity=3, work=die, heartbeat_s=0.25
        )

        fast = Backoff(initial_s=0.02, factor=2, max_s=0.1)
        submitted: list[SubmitTask] = []
        for n in range(150):
            deps = (submitted[-1].task_id,) if n % 10 == 9 else ()
            cmd = SubmitTask(
                capability="b" if n % 3 == 0 else "a",
                payload="poison" if n == 42 else n,
                resources=("gpu",) if n % 7 == 0 else (),
                depends_on=deps,
                max_attempts=3,
                backoff=fast,
                reply_to="client",
            )
            submitted.append(cmd)
            await client.publisher.send(cmd)  # type: ignore[attr-defined]

        await victim.inbox.wait_for(lambda box: box.of(AssignTask))
        victim.silence()
        await victim.inbox.consumer.stop(timeout=1)  # killed: hears nothing more
        ids = {c.task_id for c in submitted}
        await client.wait_for(
            lambda box: len({o.task_id for o in box.of(TaskOutcome)} & ids) == len(ids),
            timeout=60,
        )

        records: list[Any] = []
        while page := await store.read_all(records[-1].position if records else 0, 1000):
            records += page
        ends: defaultdict[UUID, list[str]] = defaultdict(list)
        victims: set[UUID] = set()
        placed_after: Counter[UUID] = Counter()
        for record in records:
            event = load_event(record)
            if record.type in TERMINAL:
                ends[event.task_id].append(record.type)  # type: ignore[attr-defined]
            if isinstance(event, TaskAssigned):
                if event.agent_id == "victim":
                    victims.add(event.task_id)
                elif event.task_id in victims:
                    placed_after[event.task_id] += 1
        assert {t: len(e) for t, e in ends.items() if len(e) != 1} == {}
        assert set(ends) == ids
        poison = submitted[42].task_id
        assert ends[poison] == ["TaskDead"]
        capacity = {"victim": 3, **{f"w{i}": 3 for i in range(4)}}
        assert all(peak <= capacity[a] for a, peak in peak_agent_load(records).items())
        assert peak_resource_use(records).get("gpu", 0) <= 2
        assert victims, "the victim never got work"
        dead_by_deps = {t for t, e in ends.items() if e == ["TaskCancelled"]}
        assert all(placed_after[t] >= 1 or t in dead_by_deps for t in victims)
