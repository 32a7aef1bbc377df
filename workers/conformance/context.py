"""What a scenario works with: its fleet, its agents, and the moves every scenario shares."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from contracts import AgentJoined, Backoff, Event, TaskSucceeded
from workers.conformance.fleet import CAPABILITY, AgentProcess, Fleet
from workers.conformance.history import Unmet, assigned_to, rejections, single_end, summary
from workers.conformance.proxy import FaultProxy

FAST_BACKOFF = Backoff(initial_s=0.05, factor=2.0, max_s=0.2)
JOIN_TIMEOUT_S = 20.0


class Skipped(Exception):
    """The scenario cannot run here (what it needs is missing); the reason says what."""


@dataclass
class Launched:
    """The agent under test as one scenario started it, behind a proxy the kit controls."""

    process: AgentProcess
    proxy: FaultProxy

    @property
    def agent_id(self) -> str:
        return self.process.agent_id


@dataclass
class Ctx:
    fleet: Fleet
    scenario: str
    budget_s: float
    launched: list[Launched] = field(default_factory=list)

    def nonce(self) -> str:
        return uuid.uuid4().hex[:12]

    async def start_agent(
        self, capacity: int = 1, *, amqp_url: str | None = None, agent_id: str | None = None
    ) -> Launched:
        """Launch ``--agent-cmd`` through a fresh proxy; return once the history has it joined
        with the capability and capacity it was given."""
        proxy = await self.fleet.proxy(amqp_url)
        agent_id = agent_id or self.fleet.new_agent_id(self.scenario)
        process = self.fleet.launch(agent_id, amqp_url=proxy.url(), capacity=capacity)
        launched = Launched(process, proxy)
        self.launched.append(launched)
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while True:
            joined = [e for e in await self.fleet.history.agent(agent_id) if _joined(e)]
            if joined:
                break
            if not process.alive():
                last = process.log_tail(300).strip().splitlines()[-1:] or ["(no output)"]
                raise Unmet(
                    f"the agent exited ({process.proc.returncode}) before registering: {last[0]}"
                )
            if time.monotonic() > deadline:
                raise Unmet(f"the agent did not register within {JOIN_TIMEOUT_S:g}s")
            await asyncio.sleep(0.1)
        manifest = joined[-1]
        assert isinstance(manifest, AgentJoined)
        if tuple(manifest.capabilities) != (CAPABILITY,) or manifest.capacity != capacity:
            raise Unmet(
                f"registered capabilities {list(manifest.capabilities)} and capacity "
                f"{manifest.capacity}, expected [{CAPABILITY!r}] and {capacity}"
            )
        return launched

    async def submit(
        self, payload: dict[str, Any], *, timeout_s: float = 30.0, max_attempts: int = 1
    ) -> UUID:
        handle = await self.fleet.client.submit(
            CAPABILITY,
            payload,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            backoff=FAST_BACKOFF,
        )
        return handle.task_id

    async def quick_task(self, agent: Launched, what: str, timeout: float = 15.0) -> None:
        """A short task must succeed on the agent, with no assignment turned down: the
        proof that the agent is alive and holds no slot for work it was told to stop."""
        nonce = self.nonce()
        task_id = await self.submit({"action": "succeed", "result": {"nonce": nonce}})
        events = await self.fleet.history.ended(task_id, timeout)
        try:
            end = single_end(events, TaskSucceeded)
        except Unmet as exc:
            raise Unmet(f"{what}: the next task {exc}") from None
        turned_down = rejections(events, agent.agent_id)
        if turned_down:
            raise Unmet(
                f"{what}: the agent rejected the next task ({turned_down[0].reason}): "
                "its slot was still taken"
            )
        if end.result != {"nonce": nonce}:
            raise Unmet(f"{what}: the next task's result was {end.result!r}")
        if agent.agent_id not in assigned_to(events):
            raise Unmet(f"{what}: the next task ran elsewhere ({summary(events)})")


def _joined(event: Event) -> bool:
    return isinstance(event, AgentJoined)
