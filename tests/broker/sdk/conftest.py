"""SDK fixtures: an observer in the workers' place, agents and clients that clean up after."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from broker.connection import BrokerConnection
from broker.publisher import Publisher
from broker.settings import BrokerSettings
from contracts import Envelope, Message
from sdk import Agent, Client
from tests.support.standin import Observer

MakeAgent = Callable[..., Agent]
Notify = Callable[[str, Message], Awaitable[Envelope[Message]]]


@pytest.fixture
def sdk_settings(broker_settings: BrokerSettings) -> BrokerSettings:
    # reconnect fast, so the connection-loss test does not wait aio-pika's default 5 s
    return broker_settings.model_copy(
        update={"amqp_url": broker_settings.amqp_url.rstrip("/") + "/?reconnect_interval=0.3"}
    )


@pytest.fixture
async def observer(broker: BrokerConnection) -> Observer:
    return await Observer(broker).start()


@pytest.fixture
async def notify(publisher: Publisher) -> Notify:
    async def send(to: str, payload: Message) -> Envelope[Message]:
        return await publisher.send(payload, to=to)

    return send


@pytest.fixture
async def make_agent(
    broker: BrokerConnection, sdk_settings: BrokerSettings
) -> AsyncIterator[MakeAgent]:
    agents: list[Agent] = []

    def make(agent_id: str = "agent-1", **kwargs: Any) -> Agent:
        kwargs.setdefault("heartbeat_interval_s", 0.2)
        kwargs.setdefault("settings", sdk_settings)
        agent = Agent(agent_id, **kwargs)
        spec = broker.topology.inbox_queue(agent_id)
        broker.test_queues += [spec.name, spec.dlq]  # type: ignore[attr-defined]
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        if agent.conn is None:
            continue
        try:
            await asyncio.wait_for(agent.stop(timeout=1.0), 10)
        except Exception:  # a test that failed mid-way: cut it loose
            with contextlib.suppress(Exception):
                await agent.conn.close()


@pytest.fixture
async def client(broker: BrokerConnection, sdk_settings: BrokerSettings) -> AsyncIterator[Client]:
    async with Client("client-test", settings=sdk_settings) as c:
        yield c
