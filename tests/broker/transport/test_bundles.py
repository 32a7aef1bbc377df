"""Bundles against a real RabbitMQ: fewer broker messages, the same messages handled.

Messages published in one turn of the event loop to one exchange and routing
key travel as one broker message; the consumer handles each member as if it
had come alone, and a member that fails is retried or dead-lettered alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import contracts as c
from broker import headers as h
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.declare import declare_queue
from broker.errors import Retry
from broker.logs import current_message_fields
from broker.publisher import Outgoing, Publisher
from broker.router import Incoming, Router
from broker.settings import BrokerSettings
from contracts import BUNDLE_CONTENT_TYPE, BundleMember, encode_bundle
from contracts.shards import registry_routing_key, slot_of
from tests.support.amqp import depth, eventually, publish_bytes, take

pytestmark = pytest.mark.broker

Start = Callable[[Router], Awaitable[Consumer]]


def register(agent: str) -> c.RegisterAgent:
    return c.RegisterAgent(agent_id=agent, capabilities=("crawl",), capacity=2)


# agents whose registry commands share one routing key (one slot), so they may share a bundle
_SLOT_MATES = [a for a in (f"a{i}" for i in range(40_000)) if slot_of(a) == 0]


def mate(i: int) -> str:
    return _SLOT_MATES[i]


@pytest.fixture
async def queue(broker: BrokerConnection) -> str:
    spec = broker.topology.work_queue("registry")
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, spec)
    return spec.name


@pytest.fixture
async def start_consumer(
    broker: BrokerConnection, publisher: Publisher, queue: str
) -> AsyncIterator[Start]:
    started: list[Consumer] = []

    async def start(router: Router) -> Consumer:
        spec = broker.topology.work_queue("registry")
        consumer = Consumer(broker, spec, router, publisher, worker="registry", replica="0")
        started.append(await consumer.start())
        return consumer

    yield start
    for consumer in started:
        await consumer.stop(timeout=5)


async def test_sends_at_one_moment_to_one_key_share_a_broker_message(
    broker: BrokerConnection, publisher: Publisher, queue: str
) -> None:
    await asyncio.gather(*(publisher.send(register(mate(i))) for i in range(300)))
    on_the_broker = await depth(broker, queue)
    assert on_the_broker < 300  # 300 sends, fewer broker messages
    assert publisher.bundles_sent >= 1
    got = await take(broker, queue, 300)
    assert sorted(c.decode(m.body).payload.agent_id for m in got) == sorted(  # type: ignore[attr-defined]
        mate(i) for i in range(300)
    )
    assert all(m.bundled for m in got)
    assert len({m.message_id for m in got}) == 300  # every member keeps its own id


async def test_different_keys_never_share_a_bundle(
    broker: BrokerConnection, publisher: Publisher, queue: str
) -> None:
    beat = c.Heartbeat(agent_id="a1", load=0, running=())
    await asyncio.gather(
        *(publisher.send(register(f"a{i}")) for i in range(10)),
        *(publisher.send(beat) for _ in range(10)),
    )
    got = await take(broker, queue, 20)
    assert len({m.routing_key for m in got}) > 2  # registrations of ten agents: several slots
    for m in got:  # each member arrived under its own type's and its agent's slot's key
        assert m.routing_key == registry_routing_key(
            str(m.type), json.loads(m.body)["payload"]["agent_id"]
        )


async def test_bundling_off_sends_every_message_alone(
    broker_settings: BrokerSettings, queue: str
) -> None:
    settings = broker_settings.model_copy(update={"bundle_max": 1})
    conn = await BrokerConnection(settings, role="test").connect()
    try:
        publisher = await Publisher(conn, sender="test").start()
        await asyncio.gather(*(publisher.send(register(mate(i))) for i in range(50)))
        assert await depth(conn, queue) == 50
        assert publisher.bundles_sent == 0
    finally:
        await conn.close()


async def test_a_bundle_is_cut_at_its_member_limit(
    broker_settings: BrokerSettings, queue: str
) -> None:
    settings = broker_settings.model_copy(update={"bundle_max": 10})
    conn = await BrokerConnection(settings, role="test").connect()
    try:
        publisher = await Publisher(conn, sender="test").start()
        await asyncio.gather(*(publisher.send(register(mate(i))) for i in range(95)))
        assert await depth(conn, queue) == 10  # 9 bundles of 10, one of 5
    finally:
        await conn.close()


async def test_every_member_is_handled_once_and_the_bundle_acked(
    broker: BrokerConnection, publisher: Publisher, queue: str, start_consumer: Start
) -> None:
    seen: list[str] = []
    router = Router()

    @router.on(c.RegisterAgent)
    async def on_register(msg: Incoming[c.RegisterAgent]) -> None:
        assert msg.user_id == "guest"  # the bundle's validated user is every member's
        fields = current_message_fields()  # its log lines name this member, not the bundle
        assert fields["message_id"] == msg.message_id
        assert fields["correlation_id"] == str(msg.envelope.correlation_id)
        assert fields["trace_id"] == msg.envelope.correlation_id.hex
        assert (fields["worker"], fields["msg_type"]) == ("registry", "RegisterAgent")
        seen.append(msg.payload.agent_id)

    await asyncio.gather(*(publisher.send(register(mate(i))) for i in range(200)))
    consumer = await start_consumer(router)
    await eventually(lambda: len(seen) == 200)
    assert sorted(seen) == sorted(mate(i) for i in range(200))
    await eventually(lambda: consumer.handled == 200)
    await asyncio.sleep(0.2)
    assert len(seen) == 200  # nothing handled twice
    assert await depth(broker, queue) == 0  # acked


async def _publish_bundle(
    broker: BrokerConnection, routing_key: str, members: list[BundleMember]
) -> None:
    await publish_bytes(
        broker,
        broker.topology.commands,
        routing_key,
        encode_bundle(members),
        content_type=BUNDLE_CONTENT_TYPE,
        message_id="bundle-1",
        user_id="guest",
    )


def _member(payload: c.Message, **kwargs: Any) -> BundleMember:
    envelope = c.Envelope.wrap(payload, sender="test")
    return BundleMember(
        body=c.encode(envelope), message_id=str(envelope.id), type=envelope.type, **kwargs
    )


async def test_a_bad_member_is_dead_lettered_alone_with_its_reason(
    broker: BrokerConnection, queue: str, start_consumer: Start
) -> None:
    seen: list[str] = []
    router = Router()

    @router.on(c.RegisterAgent)
    async def on_register(msg: Incoming[c.RegisterAgent]) -> None:
        seen.append(msg.payload.agent_id)

    good = [_member(register("a1")), _member(register("a2"))]
    bad = BundleMember(body=b'{"type": "RegisterAgent", "oops": 1}', message_id="bad-1")
    await _publish_bundle(broker, "registry.RegisterAgent", [good[0], bad, good[1]])
    consumer = await start_consumer(router)
    (letter,) = await take(broker, f"{queue}.dlq", 1)
    assert letter.message_id == "bad-1"
    assert letter.body == bad.body  # the member alone, not the bundle
    assert letter.content_type == "application/json"
    assert (letter.headers or {})[h.DL_REASON] == "invalid"
    assert (letter.headers or {})[h.DL_ROUTING_KEY] == "registry.RegisterAgent"
    await eventually(lambda: sorted(seen) == ["a1", "a2"])
    await eventually(lambda: consumer.handled == 3)
    await asyncio.sleep(0.1)
    assert await depth(broker, queue) == 0  # the bundle was acked


async def test_a_failing_member_is_retried_alone(
    broker: BrokerConnection, queue: str, start_consumer: Start
) -> None:
    calls: dict[str, int] = {}
    router = Router()

    @router.on(c.RegisterAgent)
    async def on_register(msg: Incoming[c.RegisterAgent]) -> None:
        agent = msg.payload.agent_id
        calls[agent] = calls.get(agent, 0) + 1
        if agent == "flaky" and msg.attempt == 1:
            raise Retry("not yet")

    members = [_member(register(a)) for a in ("a1", "flaky", "a2")]
    await _publish_bundle(broker, "registry.RegisterAgent", members)
    await start_consumer(router)
    await eventually(lambda: calls.get("flaky") == 2)
    await asyncio.sleep(0.3)
    assert calls == {"a1": 1, "flaky": 2, "a2": 1}  # only the failing member went round again


async def test_a_bundle_that_cannot_be_split_is_dead_lettered_whole(
    broker: BrokerConnection, queue: str, start_consumer: Start
) -> None:
    await _publish_bundle(broker, "registry.RegisterAgent", [])  # empty: no members
    raw = b'{"n": 99}\n{}\n'
    await publish_bytes(
        broker,
        broker.topology.commands,
        "registry.RegisterAgent",
        raw,
        content_type=BUNDLE_CONTENT_TYPE,
        message_id="broken",
    )
    await start_consumer(Router())
    letters = await take(broker, f"{queue}.dlq", 2)
    assert {m.message_id for m in letters} == {"bundle-1", "broken"}
    for letter in letters:
        assert (letter.headers or {})[h.DL_REASON] == "malformed"
        assert letter.content_type == BUNDLE_CONTENT_TYPE  # kept as it came, for inspection
    broken = next(m for m in letters if m.message_id == "broken")
    assert broken.body == raw


async def test_an_unroutable_bundle_fails_every_member(
    broker: BrokerConnection, publisher: Publisher
) -> None:
    outgoing = [
        Outgoing(
            exchange=broker.topology.inbox,
            routing_key="nobody-here",
            body=b"{}",
            message_id=f"m{i}",
            bundle=True,
        )
        for i in range(5)
    ]
    results = await asyncio.gather(
        *(publisher.publish_raw(o) for o in outgoing), return_exceptions=True
    )
    assert all(type(r).__name__ == "Unroutable" for r in results), results
