"""Drain ends from what the task history gives an agent, never from a stale heartbeat.

Real broker, every worker in this process: an agent beats once with load 0, then
starts tasks (no beat since), then drains. Its tasks must stay its own until it reports
them: every result accepted, nothing handed back, and it leaves once it holds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.connection import BrokerConnection
from broker.publisher import Publisher
from broker.settings import BrokerSettings
from contracts import AssignTask, SubmitTask
from tests.support.agent import ScriptedAgent
from tests.support.history import History
from workers.runtime.services import Running, run_services
from workers.runtime.settings import WorkerSettings

pytestmark = pytest.mark.broker


@pytest.fixture
async def fleet(
    broker: BrokerConnection, broker_settings: BrokerSettings, tmp_path: Path
) -> AsyncIterator[Running]:
    settings = WorkerSettings(
        broker=broker_settings, store_url=f"sqlite:///{tmp_path}/d.db", sweep_interval_s=0.1
    )
    async with run_services(settings, workers=["all"], replica="0") as running:
        yield running


async def test_drain_after_tasks_started_since_the_last_heartbeat_loses_nothing(
    broker: BrokerConnection, fleet: Running, publisher: Publisher
) -> None:
    history = History(fleet)
    gate = asyncio.Event()

    async def work(agent: ScriptedAgent, task: AssignTask) -> None:
        await agent.report(task, "started")
        await gate.wait()
        await agent.report(task, "succeeded", result={"done": str(task.task_id)})

    # one heartbeat at start (load 0), the next only in a minute: the registry's last word
    # from the agent says it runs nothing while it runs three tasks
    agent = await ScriptedAgent(broker, "drainer", capacity=3, heartbeat_s=60, work=work).start()
    try:

        async def joined() -> bool:
            return "AgentJoined" in await history.types("agent-drainer")

        await history.wait(joined)
        submits = [SubmitTask(capability="work", payload={"n": n}) for n in range(3)]
        for submit in submits:
            await publisher.send(submit)
        for submit in submits:
            await history.wait_task(submit.task_id, "TaskStarted", timeout=20)

        await agent.deregister(drain=True)

        async def draining() -> bool:
            return "AgentDraining" in await history.types("agent-drainer")

        await history.wait(draining)
        await asyncio.sleep(0.5)  # several sweeps: a wrong leave would be recorded by now
        assert await history.types("agent-drainer") == ["AgentJoined", "AgentDraining"]

        gate.set()
        for submit in submits:
            done = await history.wait_task(submit.task_id, "TaskSucceeded", timeout=20)
            assert done.result == {"done": str(submit.task_id)}  # type: ignore[attr-defined]

        async def left() -> bool:
            return "AgentLeft" in await history.types("agent-drainer")

        await history.wait(left)  # the sweeper sees it holds nothing now (no beat needed)
        assert await history.types("agent-drainer") == [
            "AgentJoined",
            "AgentDraining",
            "AgentLeft",
        ]
        for submit in submits:
            types = await history.types(f"task-{submit.task_id}")
            assert "TaskRequeued" not in types
            assert types.count("TaskAssigned") == 1
    finally:
        await agent.stop()


async def test_drain_holding_nothing_leaves_at_once(
    broker: BrokerConnection, fleet: Running
) -> None:
    history = History(fleet)
    agent = await ScriptedAgent(broker, "idle-drainer", heartbeat_s=60).start()
    try:

        async def joined() -> bool:
            return "AgentJoined" in await history.types("agent-idle-drainer")

        await history.wait(joined)
        await agent.deregister(drain=True)

        async def left() -> bool:
            return "AgentLeft" in await history.types("agent-idle-drainer")

        await history.wait(left)
        assert await history.types("agent-idle-drainer") == [
            "AgentJoined",
            "AgentDraining",
            "AgentLeft",
        ]
    finally:
        await agent.stop()
