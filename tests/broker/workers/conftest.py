"""Fixtures for the worker tests: settings with short windows, the services, scripted agents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from broker.connection import BrokerConnection
from broker.settings import BrokerSettings
from tests.support.agent import Inbox, ScriptedAgent
from tests.support.history import History
from workers.runtime.services import Running, run_services
from workers.runtime.settings import WorkerSettings
from workers.store import open_store


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
