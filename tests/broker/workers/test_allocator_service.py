"""Placement over the real broker and store: capacity, priority, resources, lost agents."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from contracts import (
    AssignTask,
    DeclareResource,
    SubmitTask,
    TaskAssigned,
    TaskOutcome,
    TaskRequeued,
)
from tests.broker.workers.invariants import peak_agent_load, peak_resource_use
from tests.support.agent import Inbox, ScriptedAgent
from tests.support.history import History
from workers.runtime.messages import load_event

pytestmark = pytest.mark.broker


async def send(client: Inbox, message: Any) -> None:
    await client.publisher.send(message)  # type: ignore[attr-defined]


async def all_done(client: Inbox, n: int, timeout: float = 15) -> None:
    await client.wait_for(lambda box: len(box.of(TaskOutcome)) >= n, timeout=timeout)


def slow(seconds: float) -> Any:
    async def work(agent: ScriptedAgent, task: AssignTask) -> None:
        await agent.report(task, "started")
        await asyncio.sleep(seconds)
        await agent.report(task, "succeeded", result=task.attempt)

    return work


async def test_agents_are_never_over_capacity(history: History, agents: Any, client: Inbox) -> None:
    await agents("a", capabilities=("c",), capacity=2, work=slow(0.05))
    await agents("b", capabilities=("c",), capacity=1, work=slow(0.05))
    for _ in range(12):
        await send(client, SubmitTask(capability="c", reply_to="client"))
    await all_done(client, 12)
    assert {o.state for o in client.of(TaskOutcome)} == {"succeeded"}
    peaks = peak_agent_load(await history.all())
    assert peaks["a"] <= 2
    assert peaks["b"] <= 1
    assert peaks["a"] == 2  # it was filled, so the bound is what held it


async def test_highest_priority_first_then_first_come(
    history: History, agents: Any, client: Inbox
) -> None:
    order = [(0, "low-1"), (5, "high-1"), (0, "low-2"), (5, "high-2"), (9, "top")]
    cmds = {}
    for priority, name in order:
        cmd = SubmitTask(capability="c", priority=priority, payload=name, reply_to="client")
        cmds[cmd.task_id] = name
        await send(client, cmd)
    for task_id in cmds:
        await history.wait_task(task_id, "TaskSubmitted")
    await agents("solo", capabilities=("c",), capacity=1)  # joins after all are waiting
    await all_done(client, len(order))
    placed = [
        cmds[e.task_id]
        for e in (load_event(r) for r in await history.all())
        if isinstance(e, TaskAssigned)
    ]
    assert placed == ["top", "high-1", "high-2", "low-1", "low-2"]


async def test_a_resource_of_capacity_two_is_never_over(
    history: History, agents: Any, client: Inbox
) -> None:
    await send(client, DeclareResource(resource="gpu", capacity=2))
    await agents("a", capabilities=("c",), capacity=3, work=slow(0.1))
    await agents("b", capabilities=("c",), capacity=3, work=slow(0.1))
    for _ in range(8):
        await send(client, SubmitTask(capability="c", resources=("gpu",), reply_to="client"))
    await all_done(client, 8)

    async def all_released() -> bool:  # the last release follows the last outcome
        return (await history.types("resource-gpu")).count("LeaseReleased") == 8

    await history.wait(all_released)
    assert (await history.types("resource-gpu")).count("LeaseGranted") == 8
    assert peak_resource_use(await history.all()) == {"gpu": 2}


async def test_a_lost_agents_task_is_placed_again_and_its_late_report_is_refused(
    history: History, agents: Any, client: Inbox
) -> None:
    held: list[AssignTask] = []

    async def vanish(agent: ScriptedAgent, task: AssignTask) -> None:
        held.append(task)
        await agent.report(task, "started")
        agent.silence()  # the process "dies" mid-task

    doomed = await agents("doomed", capabilities=("c",), work=vanish, heartbeat_s=0.2)
    cmd = SubmitTask(capability="c", reply_to="client")
    await send(client, cmd)
    await history.wait_task(cmd.task_id, "TaskStarted")
    await agents("rescuer", capabilities=("c",), work=slow(0.3))
    requeued = await history.wait_task(cmd.task_id, "TaskRequeued", timeout=5)
    assert isinstance(requeued, TaskRequeued)
    assert requeued.reason == "agent doomed lost"
    assert requeued.attempt == 2
    await history.wait_task(cmd.task_id, "TaskStarted")  # by the rescuer... or the first start
    # the lost holder comes back with its old token while the rescuer runs it
    await doomed.report(held[0], "succeeded", result="stale")
    outcome = await client.wait_for(
        lambda box: next((o for o in box.of(TaskOutcome) if o.task_id == cmd.task_id), None)
    )
    assert outcome.result == 2  # the rescuer's attempt, not the stale one
    assigned = [e for e in await history.task(cmd.task_id) if isinstance(e, TaskAssigned)]
    assert [a.agent_id for a in assigned] == ["doomed", "rescuer"]
    assert assigned[1].fencing_token > assigned[0].fencing_token


async def test_a_rejected_assignment_goes_back_to_pending(
    history: History, agents: Any, client: Inbox
) -> None:
    async def refuse(agent: ScriptedAgent, task: AssignTask) -> None:
        await agent.report(task, "reject", reason="full")

    await agents("grumpy", capabilities=("c",), work=refuse)
    cmd = SubmitTask(capability="c", reply_to="client")
    await send(client, cmd)
    await history.wait_task(cmd.task_id, "TaskRequeued")
    await agents("happy", capabilities=("c",), capacity=1)
    outcome = await client.wait_for(lambda box: box.of(TaskOutcome))
    assert outcome[0].state == "succeeded"
    assigned = [e for e in await history.task(cmd.task_id) if isinstance(e, TaskAssigned)]
    assert assigned[-1].agent_id == "happy"
    assert assigned[-1].attempt == 1  # a refusal does not use up an attempt
