"""The consumer runtime against a real RabbitMQ: ack, retry, dead-letter, shutdown."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import contracts as c
from broker import headers as h
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.declare import declare_queue
from broker.errors import Reject, Retry, Unroutable
from broker.publisher import Publisher, routing_key_for
from broker.router import Incoming, Router
from broker.topology import QueueSpec
from tests.support.amqp import depth, eventually, publish_bytes, take

pytestmark = pytest.mark.broker

Start = Callable[..., Awaitable[Consumer]]


def registry_spec(conn: BrokerConnection) -> QueueSpec:
    return conn.topology.work_queue("registry")


@pytest.fixture
async def start_consumer(broker: BrokerConnection, publisher: Publisher) -> AsyncIterator[Start]:
    started: list[Consumer] = []

    async def start(router: Router, **kwargs: Any) -> Consumer:
        consumer = Consumer(
            broker,
            registry_spec(broker),
            router,
            publisher,
            worker="registry",
            replica=str(len(started)),
            **kwargs,
        )
        started.append(await consumer.start())
        return consumer

    yield start
    for consumer in started:
        await consumer.stop(timeout=5)


def register(agent: str = "a1") -> c.RegisterAgent:
    return c.RegisterAgent(agent_id=agent, capabilities=("crawl",), capacity=2)


async def test_typed_round_trip(publisher: Publisher, start_consumer: Start) -> None:
    got: list[Incoming[c.RegisterAgent]] = []
    router = Router()

    @router.on(c.RegisterAgent)
    async def on_register(msg: Incoming[c.RegisterAgent]) -> None:
        got.append(msg)

    await start_consumer(router)
    sent = await publisher.send(register())
    await eventually(lambda: len(got) == 1)
    assert got[0].payload == register()
    assert got[0].envelope.id == sent.id
    assert got[0].attempt == 1
    assert got[0].user_id == "guest"  # broker-validated


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{this is not json", "malformed"),
        (
            b'{"id": "0b6f5c7e-8f1a-4c39-9a43-3f1c2b7d9e01", "sent_at": "2026-01-01T00:00:00Z", '
            b'"type": "RegisterAgent", "version": 1, "correlation_id": "'
            b'6b0bd0c4-9a6c-4b2f-8d8e-7d7a1f9e2a11", "sender": "x", '
            b'"payload": {"agent_id": "a", "capabilities": ["c"], "capacity": 0}}',
            "invalid",
        ),
        (b'{"type": "TeleportAgent", "version": 1}', "unknown_type"),
    ],
)
async def test_bad_messages_are_dead_lettered_once_with_reason_and_consuming_goes_on(
    broker: BrokerConnection, publisher: Publisher, start_consumer: Start, body: bytes, reason: str
) -> None:
    calls: list[str] = []
    router = Router()

    @router.on(c.RegisterAgent)
    async def on_register(msg: Incoming[c.RegisterAgent]) -> None:
        calls.append(msg.payload.agent_id)

    consumer = await start_consumer(router)
    queue = registry_spec(broker)
    await publish_bytes(broker, broker.topology.commands, "registry.Bad", body, message_id="bad-1")
    await publisher.send(register("after-the-bad-one"))
    await eventually(lambda: calls == ["after-the-bad-one"])
    dead = await take(broker, queue.dlq, 1)
    assert len(dead) == 1
    headers = dead[0].headers or {}
    assert headers[h.DL_REASON] == reason
    assert headers[h.DL_ATTEMPTS] == 1
    assert headers[h.DL_QUEUE] == queue.name
    assert headers[h.DL_ROUTING_KEY] == "registry.Bad"
    assert headers[h.DL_ERROR]
    assert dead[0].body == body
    assert dead[0].message_id == "bad-1"
    if reason == "invalid":
        errors = json.loads(str(headers[h.DL_ERRORS]))
        assert errors[0]["loc"] == "payload.capacity"
    # delivered exactly once: nothing waits to be redelivered, nothing else was dead-lettered
    await asyncio.sleep(0.3)
    assert await depth(broker, queue.dlq) == 0
    assert await depth(broker, queue.name) == 0
    assert consumer.handled == 2


async def test_retry_backs_off_then_dead_letters_after_last_attempt(
    broker: BrokerConnection, publisher: Publisher, start_consumer: Start
) -> None:
    seen: list[tuple[int, float]] = []
    router = Router()

    @router.on(c.RegisterAgent)
    async def flaky(msg: Incoming[c.RegisterAgent]) -> None:
        seen.append((msg.attempt, time.monotonic()))
        raise Retry("downstream busy", after=0.2)

    await start_consumer(router)
    await publisher.send(register())
    dead = await take(broker, registry_spec(broker).dlq, 1, timeout=15)
    assert [attempt for attempt, _ in seen] == [1, 2, 3]  # max_attempts=3 in the test settings
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(seen)]
    assert all(gap >= 0.19 for gap in gaps), gaps  # each retry waited its back-off
    headers = dead[0].headers or {}
    assert headers[h.DL_REASON] == "retries_exhausted"
    assert headers[h.DL_ERROR] == "downstream busy"
    assert headers[h.DL_ATTEMPTS] == 3
    assert headers[h.DL_EXCHANGE] == broker.topology.commands  # not the delay route it came back by
    assert headers[h.DL_ROUTING_KEY] == routing_key_for(register())  # its slotted key


async def test_handler_exception_is_retried_and_dead_lettered_with_its_type(
    broker: BrokerConnection, publisher: Publisher, start_consumer: Start
) -> None:
    router = Router()
    calls = 0

    @router.on(c.RegisterAgent)
    async def buggy(msg: Incoming[c.RegisterAgent]) -> None:
        nonlocal calls
        calls += 1
        raise ZeroDivisionError("division by zero")

    await start_consumer(router)
    await publisher.send(register())
    dead = await take(broker, registry_spec(broker).dlq, 1, timeout=15)
    headers = dead[0].headers or {}
    assert headers[h.DL_REASON] == "handler_error"
    assert headers[h.DL_ERROR_TYPE] == "ZeroDivisionError"
    assert "division by zero" in str(headers[h.DL_ERROR])
    assert calls == 3


async def test_reject_dead_letters_at_once(
    broker: BrokerConnection, publisher: Publisher, start_consumer: Start
) -> None:
    router = Router()

    @router.on(c.RegisterAgent)
    async def refuse(msg: Incoming[c.RegisterAgent]) -> None:
        raise Reject("agent ids starting with 'a' are banned", reason="rejected")

    await start_consumer(router)
    await publisher.send(register())
    dead = await take(broker, registry_spec(broker).dlq, 1)
    headers = dead[0].headers or {}
    assert headers[h.DL_REASON] == "rejected"
    assert headers[h.DL_ATTEMPTS] == 1


async def test_unroutable_publish_raises(publisher: Publisher) -> None:
    # no queue is bound for the "nobody" route
    env = c.Envelope.wrap(register(), sender="t")
    with pytest.raises(Unroutable):
        await publisher.publish(env, exchange=publisher.topology.commands, routing_key="nobody.X")


async def test_graceful_shutdown_finishes_what_it_holds_and_loses_nothing(
    broker: BrokerConnection, publisher: Publisher, start_consumer: Start
) -> None:
    started: list[str] = []
    finished: list[str] = []
    router = Router()

    @router.on(c.RegisterAgent)
    async def slow(msg: Incoming[c.RegisterAgent]) -> None:
        started.append(msg.payload.agent_id)
        await asyncio.sleep(0.3)
        finished.append(msg.payload.agent_id)

    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, registry_spec(broker))
    sent = [f"agent-{i}" for i in range(20)]
    await asyncio.gather(*(publisher.send(register(a)) for a in sent))
    consumer = await start_consumer(router, prefetch=4)
    await eventually(lambda: len(started) >= 2)
    await consumer.stop(timeout=10)
    assert sorted(started) == sorted(finished)  # everything in hand was finished
    leftover = await take(broker, registry_spec(broker).name, 20 - len(finished), timeout=5)
    remaining = [c.decode(m.body).payload.agent_id for m in leftover]  # type: ignore[attr-defined]
    assert sorted(finished + remaining) == sorted(sent)  # nothing lost, nothing doubled


async def test_publish_pipelines_many_confirms(
    broker: BrokerConnection, publisher: Publisher
) -> None:
    queue = registry_spec(broker)
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, queue)
    await asyncio.gather(*(publisher.send(register(f"p{i}")) for i in range(200)))
    got = await take(broker, queue.name, 200)
    assert sorted(c.decode(m.body).payload.agent_id for m in got) == sorted(  # type: ignore[attr-defined]
        f"p{i}" for i in range(200)
    )


async def test_bad_message_in_a_queue_without_its_own_dlq_goes_to_the_shared_one(
    broker: BrokerConnection, publisher: Publisher
) -> None:
    spec = broker.topology.client_queue("c1")
    router = Router()
    consumer = Consumer(broker, spec, router, publisher, worker="client", replica="0")
    await consumer.start()
    try:
        await publish_bytes(broker, broker.topology.inbox, "c1", b"not json", message_id="x")
        dead = await take(broker, broker.topology.shared_dlq, 1)
        assert (dead[0].headers or {})[h.DL_REASON] == "malformed"
        await eventually(lambda: consumer.handled == 1)
    finally:
        await consumer.stop(timeout=5)
