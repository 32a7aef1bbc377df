"""Dashboard fixtures: a store file, a fleet in this process, SDK agents, the dashboard served.

Teardown runs in reverse: the server and the dashboard stop before the agents and
the workers, and the namespace's queues go last (the ``broker`` fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from broker.connection import BrokerConnection
from broker.settings import BrokerSettings
from sdk import Agent, Client, Task
from workers.dashboard.server import build_app, serve
from workers.dashboard.service import Dashboard, DashboardConfig
from workers.runtime.services import Running, run_services
from workers.runtime.settings import WorkerSettings

REFRESH_S = 0.3


@pytest.fixture
async def fleet(
    broker: BrokerConnection, broker_settings: BrokerSettings, store_url: str
) -> AsyncIterator[Running]:
    settings = WorkerSettings(broker=broker_settings, store_url=store_url, sweep_interval_s=0.2)
    async with run_services(settings, workers=["all"], replica="0") as running:
        yield running


async def echo(task: Task) -> dict[str, Any]:
    await task.progress(0.5, "echoing")
    return {"echo": task.payload}


async def explode(task: Task) -> None:
    # the error text comes back to the dashboard: it must be shown, never run
    raise RuntimeError(task.payload["message"])


@pytest.fixture
async def agents(
    broker: BrokerConnection, broker_settings: BrokerSettings
) -> AsyncIterator[Callable[..., Any]]:
    """Start SDK agents with the ``echo`` and ``explode`` capabilities; they leave afterwards."""
    started: list[Agent] = []

    async def start(agent_id: str, capacity: int = 2) -> Agent:
        agent = Agent(
            agent_id, capacity=capacity, heartbeat_interval_s=0.3, settings=broker_settings
        )
        agent.add_capability("echo", echo)
        agent.add_capability("explode", explode)
        spec = broker.topology.inbox_queue(agent_id)
        broker.test_queues += [spec.name, spec.dlq]  # type: ignore[attr-defined]
        started.append(await agent.start())
        return agent

    yield start
    for agent in started:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(agent.stop(timeout=1.0), 10)


@pytest.fixture
async def client(
    broker: BrokerConnection, broker_settings: BrokerSettings
) -> AsyncIterator[Client]:
    async with Client("dashboard-test", settings=broker_settings) as c:
        yield c


@pytest.fixture
async def dashboard(
    broker: BrokerConnection, broker_settings: BrokerSettings, store_url: str
) -> AsyncIterator[Dashboard]:
    config = DashboardConfig(store_url=store_url, broker=broker_settings, refresh_s=REFRESH_S)
    dash = await Dashboard(config).start()
    yield dash
    await dash.stop()


@pytest.fixture
async def site(dashboard: Dashboard) -> AsyncIterator[str]:
    """The dashboard served on a free port of 127.0.0.1; its URL, ending in '/'."""
    runner: web.AppRunner
    runner, url = await serve(build_app(dashboard), "127.0.0.1", 0)
    yield url
    await runner.cleanup()
