"""Fixtures for the worker tests: settings with short windows, a store file, the services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import pytest

from broker.connection import BrokerConnection
from broker.settings import BrokerSettings
from contracts import Event
from tests.workers.agent import Inbox, ScriptedAgent
from workers.runtime.messages import load_event
from workers.runtime.services import Running, run_services
from workers.runtime.settings import WorkerSettings
from workers.store import RecordedEvent, open_store


@pytest.fixture
def worker_settings(broker_settings: BrokerSettings, store_url: str) -> WorkerSettings:
    return WorkerSettings(
        broker=broker_settings,
        store_url=store_url,
        sweep_interval_s=0.1,
        rejection_cooldown_s=0.2,
        max_result_bytes=2000,
    )


@pytest.fixture
async def fleet(
    broker: BrokerConnection, worker_settings: WorkerSettings
) -> AsyncIterator[Running]:
    """Every worker, one replica, in this process."""
    async with run_services(worker_settings, workers=["all"], replica="0") as running:
        yield running


class History:
    """Read the event history, the only thing the tests trust."""

    def __init__(self, running: Running) -> None:
        self.store: Any = running.store

    async def all(self) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        while page := await self.store.read_all(out[-1].position if out else 0, 1000):
            out += page
        return out

    async def stream(self, stream: str) -> list[Event]:
        return [load_event(r) for r in await self.store.read(stream)]

    async def task(self, task_id: UUID) -> list[Event]:
        return await self.stream(f"task-{task_id}")

    async def types(self, stream: str) -> list[str]:
        return [type(e).__name__ for e in await self.stream(stream)]

    async def wait(
        self, check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
    ) -> Any:
        """Poll ``check`` (async) until it returns something truthy."""
        async with asyncio.timeout(timeout):
            while not (found := await check()):  # noqa: ASYNC110 - polling the store
                await asyncio.sleep(interval)
        return found

    async def wait_task(self, task_id: UUID, type_name: str, timeout: float = 10.0) -> Event:
        async def found() -> Event | None:
            return next(
                (e for e in await self.task(task_id) if type(e).__name__ == type_name), None
            )

        result: Event = await self.wait(found, timeout)
        return result


@pytest.fixture
def history(fleet: Running) -> History:
    return History(fleet)


@pytest.fixture
async def agents(broker: BrokerConnection) -> AsyncIterator[Callable[..., Any]]:
    started: list[ScriptedAgent] = []

    async def make(agent_id: str, **kwargs: Any) -> ScriptedAgent:
        agent = await ScriptedAgent(broker, agent_id, **kwargs).start()
        started.append(agent)
        return agent

    yield make
    for agent in started:
        await agent.stop()


@pytest.fixture
async def client(broker: BrokerConnection) -> AsyncIterator[Inbox]:
    """The submitter's inbox: TaskAccepted and TaskOutcome arrive here (reply_to='client')."""
    from broker.publisher import Publisher

    publisher = await Publisher(broker, sender="client").start()
    inbox = Inbox(broker, publisher, "client")
    await inbox.consumer.start()
    inbox.publisher = publisher  # type: ignore[attr-defined]
    yield inbox
    await inbox.consumer.stop(timeout=2)


__all__ = ["History", "open_store"]
