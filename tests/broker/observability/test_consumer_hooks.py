"""The consumer's hooks against a real RabbitMQ: counters per outcome, headers per hop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import uuid4

import pytest

import contracts as c
from broker import tracing
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.publisher import Publisher
from broker.router import Incoming, Router
from broker.topology import QueueSpec
from tests.support.amqp import eventually, publish_bytes
from tests.support.scrape import local_scrape

pytestmark = pytest.mark.broker

Start = Callable[..., Awaitable[Consumer]]


@pytest.fixture
async def start(
    broker: BrokerConnection, publisher: Publisher, namespace: str
) -> AsyncIterator[Start]:
    started: list[Consumer] = []

    async def start(worker: str, router: Router, spec: QueueSpec | None = None) -> Consumer:
        spec = spec or broker.topology.work_queue(worker)
        consumer = Consumer(broker, spec, router, publisher, worker=worker, replica=namespace)
        started.append(await consumer.start())
        return consumer

    yield start
    for consumer in started:
        await consumer.stop(timeout=5)


def register() -> c.RegisterAgent:
    return c.RegisterAgent(agent_id="a1", capabilities=("crawl",), capacity=1)


async def test_counters_follow_each_outcome(
    broker: BrokerConnection, publisher: Publisher, start: Start, namespace: str
) -> None:
    calls: list[str] = []
    router = Router()

    @router.on(c.RegisterAgent)
    async def flaky(incoming: Incoming[c.RegisterAgent]) -> None:
        calls.append("register")
        raise ConnectionError("upstream down")  # every attempt fails: retried, then dead

    @router.on(c.DeregisterAgent)
    async def fine(incoming: Incoming[c.DeregisterAgent]) -> None:
        calls.append("deregister")

    consumer = await start("registry", router)
    labels = {"worker": "registry", "replica": namespace}
    await publisher.send(register())
    await publisher.send(c.DeregisterAgent(agent_id="a1"))
    await publish_bytes(broker, broker.topology.commands, "registry.X", b"{not json", type="Evil")
    await eventually(lambda: consumer.handled >= 5, timeout=15)  # 3 attempts + 1 + 1

    scrape = local_scrape()
    handled = "rally_messages_handled_total"
    assert scrape.value(handled, type="RegisterAgent", outcome="retried", **labels) == 2
    assert scrape.value(handled, type="RegisterAgent", outcome="dead_lettered", **labels) == 1
    assert scrape.value(handled, type="DeregisterAgent", outcome="acked", **labels) == 1
    # a type no contract knows is "other", never the text the sender wrote
    assert scrape.value(handled, type="other", outcome="dead_lettered", **labels) == 1
    assert not scrape.find(handled, type="Evil")
    retries = scrape.value("rally_message_retries_total", error_type="ConnectionError", **labels)
    assert retries == 2
    assert scrape.value("rally_dead_letters_total", reason="handler_error", **labels) == 1
    assert scrape.value("rally_dead_letters_total", reason="malformed", **labels) == 1
    seconds = "rally_message_handling_seconds_count"
    assert scrape.value(seconds, type="RegisterAgent", **labels) == 3  # failed runs count too
    assert scrape.value(seconds, type="DeregisterAgent", **labels) == 1


async def test_each_hop_hands_its_context_to_the_next_without_opentelemetry(
    broker: BrokerConnection, publisher: Publisher, start: Start
) -> None:
    seen: dict[str, tuple[tracing.TraceContext | None, Any]] = {}
    first = Router()
    second = Router()

    @first.on(c.RegisterAgent)
    async def forward(incoming: Incoming[c.RegisterAgent]) -> None:
        seen["first"] = (tracing.current(), incoming.headers.get("traceparent"))
        stop = c.StopTask(task_id=uuid4(), attempt=1, reason="a hop further")
        await publisher.send(stop, caused_by=incoming.envelope, to="hop-2")

    @second.on(c.StopTask)
    async def land(incoming: Incoming[c.StopTask]) -> None:
        seen["second"] = (tracing.current(), incoming.headers.get("traceparent"))

    inbox = broker.topology.inbox_queue("hop-2")
    broker.test_queues += [inbox.name, inbox.dlq]  # type: ignore[attr-defined]
    await start("registry", first)
    await start("agent", second, spec=inbox)
    sent = await publisher.send(register())
    await eventually(lambda: "second" in seen, timeout=10)

    hop_1, header_1 = seen["first"]
    hop_2, header_2 = seen["second"]
    sender = tracing.parse_traceparent(header_1)
    assert sender is not None
    assert hop_1 is not None
    assert hop_2 is not None
    # one trace, the correlation id; each hop a new span whose parent is the one before
    assert sender.trace_id == hop_1.trace_id == hop_2.trace_id == sent.correlation_id.hex
    assert hop_1.parent_id == sender.span_id
    assert header_2 == hop_1.traceparent
    assert hop_2.parent_id == hop_1.span_id
    assert len({sender.span_id, hop_1.span_id, hop_2.span_id}) == 3


async def test_a_bad_traceparent_header_costs_nothing(
    broker: BrokerConnection, publisher: Publisher, start: Start
) -> None:
    got: list[tracing.TraceContext | None] = []
    router = Router()

    @router.on(c.RegisterAgent)
    async def on_register(incoming: Incoming[c.RegisterAgent]) -> None:
        got.append(tracing.current())

    consumer = await start("registry", router)
    env = c.Envelope.wrap(register(), sender="test")
    for bad in ("garbage", "ff-" + "a" * 32 + "-" + "b" * 16 + "-01", "00-" + "0" * 32):
        await publish_bytes(
            broker,
            broker.topology.commands,
            "registry.RegisterAgent",
            c.encode(c.Envelope.wrap(register(), sender="test", correlation_id=env.id)),
            headers={"traceparent": bad},
            correlation_id=str(env.id),
            type="RegisterAgent",
        )
    await eventually(lambda: len(got) == 3, timeout=10)
    assert consumer.handled == 3  # all acked: nothing retried or dead-lettered
    for hop in got:
        assert hop is not None
        assert hop.trace_id == env.id.hex
        assert hop.parent_id is None
