"""An agent the test drives by hand: it holds each assignment until the test reports on it.

It is tests/support/agent.py's ScriptedAgent (its own inbox and heartbeats,
everything through the broker) with a work function that only hands the
assignment over, so a test decides exactly which report goes out when.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from contracts import AssignTask, ReportTaskProgress
from tests.support.agent import ScriptedAgent
from tests.support.harness import Harness


@dataclass
class Hand:
    agent: ScriptedAgent
    assigned: asyncio.Queue[AssignTask]

    async def close(self) -> None:
        """Leave (so nothing more is placed here), then stop."""
        with contextlib.suppress(Exception):
            await self.agent.deregister(drain=False)
        await self.agent.stop()

    async def progress(self, assign: AssignTask, value: float) -> None:
        await self.agent.send(
            ReportTaskProgress(
                task_id=assign.task_id,
                agent_id=self.agent.agent_id,
                attempt=assign.attempt,
                fencing_token=assign.fencing_token,
                progress=value,
            )
        )


async def scripted_agent(
    h: Harness, agent_id: str = "hand-1", capability: str = "manual", capacity: int = 1
) -> Hand:
    assert h.conn is not None
    if not hasattr(h.conn, "test_queues"):
        h.conn.test_queues = []  # type: ignore[attr-defined]  # ScriptedAgent notes its queues
    h.agent_ids.append(agent_id)
    assigned: asyncio.Queue[AssignTask] = asyncio.Queue()

    async def hold(agent: ScriptedAgent, task: AssignTask) -> None:
        await assigned.put(task)
        await asyncio.Event().wait()  # "running" until the test reports and stops the agent

    agent = ScriptedAgent(
        h.conn, agent_id, capabilities=(capability,), capacity=capacity, heartbeat_s=0.5, work=hold
    )
    await agent.start()
    await h.history.wait_for(f"agent-{agent_id}", "AgentJoined")
    return Hand(agent, assigned)
