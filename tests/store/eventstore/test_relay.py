"""The outbox relay against a real RabbitMQ: order, crash recovery, two replicas, timers.

Each test gets its own exchanges and queue (a random prefix), deleted afterwards.
The publisher is a small real one written here with aio_pika and publisher confirms;
the workers' production publisher lives in broker/.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import aio_pika
import aio_pika.abc
import pytest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from tests.support.fixtures.store import Store, StoreFactory
from workers.store import (
    ConcurrencyError,
    NewEvent,
    OutboxMessage,
    OutgoingRecord,
    RecordedEvent,
    StreamAppend,
)
from workers.store.codec import utc_now
from workers.store.relay import Relay

pytestmark = pytest.mark.broker

AMQP_URL = os.environ.get("RALLY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def encode(event: RecordedEvent) -> OutgoingRecord:
    body = {
        "id": str(event.id),
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "data": event.data,
    }
    return OutgoingRecord(
        exchange="events",
        routing_key=f"{event.category}.{event.type}",
        body=json.dumps(body).encode(),
        message_id=str(event.id),
    )


class AmqpPublisher:
    """Publishes in order on one confirming channel; ``fail_next`` makes calls fail first."""

    def __init__(self, exchanges: dict[str, aio_pika.abc.AbstractExchange]) -> None:
        self.exchanges = exchanges
        self.fail_next = 0

    async def publish_outbox(self, messages: Sequence[OutgoingRecord]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker went away (simulated)")
        for m in messages:
            await self.exchanges[m.exchange].publish(
                aio_pika.Message(
                    m.body,
                    message_id=m.message_id,
                    headers=dict(m.headers),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=m.routing_key,
            )


@dataclass
class Received:
    at: float
    exchange: str
    message_id: str
    routing_key: str
    body: bytes

    @property
    def event(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


@dataclass
class Broker:
    publisher: AmqpPublisher
    received: list[Received] = field(default_factory=list)

    async def collect(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(self.received)} of {count} messages")
            await asyncio.sleep(0.01)
        return list(self.received)

    async def settle(self, count: int, quiet: float = 0.4) -> list[Received]:
        """Exactly ``count`` messages, and no straggler (duplicate) in ``quiet`` seconds."""
        await self.collect(count)
        await asyncio.sleep(quiet)
        assert len(self.received) == count, "more messages than rows: something went twice"
        return list(self.received)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
        pytest.skip(f"RabbitMQ at {AMQP_URL} does not answer: {exc}")
    prefix = f"rally-test-{uuid.uuid4().hex[:10]}"
    channel = await connection.channel(publisher_confirms=True)
    events = await channel.declare_exchange(f"{prefix}.events", aio_pika.ExchangeType.TOPIC)
    inbox = await channel.declare_exchange(f"{prefix}.inbox", aio_pika.ExchangeType.TOPIC)
    queue = await channel.declare_queue(f"{prefix}.all", exclusive=True)
    await queue.bind(events, "#")
    await queue.bind(inbox, "#")
    result = Broker(AmqpPublisher({"events": events, "inbox": inbox}))

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        result.received.append(
            Received(
                time.monotonic(),
                str(message.exchange).rsplit(".", 1)[-1],
                str(message.message_id),
                str(message.routing_key),
                message.body,
            )
        )

    tag = await queue.consume(on_message, no_ack=True)
    try:
        yield result
    finally:
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        await events.delete()
        await inbox.delete()
        await connection.close()


@pytest.fixture
async def relays(opened: StoreFactory) -> AsyncIterator[list[Relay]]:
    """Relays to stop at the end (before ``opened`` closes their stores)."""
    started: list[Relay] = []
    yield started
    for relay in started:
        await relay.stop()


async def start_relay(relays: list[Relay], store: Store, broker: Broker, **options: float) -> Relay:
    options = {"sweep_interval": 0.02, "lease_seconds": 1.0, **options}
    relay = Relay(store, broker.publisher, encode, **options)  # type: ignore[arg-type]
    await relay.start()
    relays.append(relay)
    return relay


def ev(**data: object) -> NewEvent:
    return NewEvent("Happened", data)


def assert_in_order_per_stream(received: Sequence[Received], counts: dict[str, int]) -> None:
    events = [r.event for r in received if r.exchange == "events"]
    assert len({e["id"] for e in events}) == len(events), "an event arrived twice"
    for stream, count in counts.items():
        versions = [e["version"] for e in events if e["stream"] == stream]
        assert versions == list(range(1, count + 1)), f"{stream}: {versions}"


async def append_retrying(store: Store, stream: str, event: NewEvent) -> None:
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(ConcurrencyError),
        wait=wait_random(0, 0.003),
        stop=stop_after_attempt(200),
        reraise=True,
    ):
        with attempt:
            await store.append(stream, await store.stream_version(stream), [event])


async def test_committed_events_arrive_in_order_per_stream(
    opened: StoreFactory, any_store_url: str, broker: Broker, relays: list[Relay]
) -> None:
    store = await opened(any_store_url)
    await start_relay(relays, store, broker)
    streams = ["task-a", "task-b", "agent-c"]
    for round_ in range(10):
        await asyncio.gather(*(store.append(s, round_, [ev(r=round_)]) for s in streams))
    await store.append_many([StreamAppend(s, 10, [ev(), ev()]) for s in streams])

    received = await broker.settle(36)
    assert_in_order_per_stream(received, {s: 12 for s in streams})
    assert {r.routing_key for r in received} == {"task.Happened", "agent.Happened"}
    assert {r.exchange for r in received} == {"events"}
    assert all(r.message_id == r.event["id"] for r in received)
    assert await store.outbox_pending() == 0


async def test_a_crash_between_commit_and_publish_loses_nothing(
    opened: StoreFactory, any_store_url: str, broker: Broker, relays: list[Relay]
) -> None:
    # A replica whose relay dies right after commit: its rows are born claimed by it,
    # and nothing ever publishes them.
    crashed = await opened(any_store_url)
    crashed.attach_relay("dead-replica", 0.5, lambda ids: None)
    committed_at = time.monotonic()
    for v in range(5):
        await crashed.append("task-1", v, [ev(v=v)])
    notice = OutboxMessage("inbox", "agent.a1", b"assigned", "notice-1")
    await crashed.append("task-1", 5, [ev(v=5)], outbox=[notice])
    # And a process without any relay (a CLI, say): its rows are free for the sweeper.
    await crashed.close()
    bare = await opened(any_store_url)
    await bare.append("task-2", 0, [ev()])
    assert await bare.outbox_pending() == 8

    survivor = await opened(any_store_url)
    await start_relay(relays, survivor, broker, claim_seconds=0.5)
    received = await broker.settle(8)
    assert_in_order_per_stream(received, {"task-1": 6, "task-2": 1})
    by_id = {r.message_id: r for r in received}
    assert by_id["notice-1"].body == b"assigned"
    # task-1's rows waited for the dead replica's claim to expire; task-2's did not.
    task1 = [r for r in received if r.exchange == "events" and r.event["stream"] == "task-1"]
    assert min(r.at for r in task1) >= committed_at + 0.45
    assert await survivor.outbox_pending() == 0


async def test_two_relays_publish_each_row_once(
    opened: StoreFactory, any_store_url: str, broker: Broker, relays: list[Relay]
) -> None:
    one, two = await opened(any_store_url), await opened(any_store_url)
    await start_relay(relays, one, broker)
    await start_relay(relays, two, broker)

    async def replica(store: Store, name: str) -> None:
        for i in range(15):
            await append_retrying(store, "task-shared", ev(by=name, i=i))
            await append_retrying(store, f"task-{name}", ev(i=i))

    await asyncio.gather(replica(one, "one"), replica(two, "two"))
    received = await broker.settle(60)
    assert_in_order_per_stream(received, {"task-shared": 30, "task-one": 15, "task-two": 15})
    assert sum(r.leader for r in relays) == 1
    assert await one.outbox_pending() == 0


async def test_timers_wait_for_not_before(
    opened: StoreFactory, any_store_url: str, broker: Broker, relays: list[Relay]
) -> None:
    store = await opened(any_store_url)
    await start_relay(relays, store, broker)
    due = utc_now() + timedelta(seconds=0.5)
    due_mono = time.monotonic() + 0.5
    timer = OutboxMessage("inbox", "tasks.timeout", b"time-out", "timer-1", not_before=due)
    now = OutboxMessage("inbox", "agent.a1", b"now", "now-1")
    await store.append("task-1", 0, [ev()], outbox=[timer, now])

    received = await broker.settle(3)
    by_id = {r.message_id: r for r in received}
    assert by_id["timer-1"].at >= due_mono - 0.02
    assert by_id["now-1"].at < due_mono


async def test_a_failed_publish_is_retried(
    opened: StoreFactory, any_store_url: str, broker: Broker, relays: list[Relay]
) -> None:
    store = await opened(any_store_url)
    await start_relay(relays, store, broker, retry_delay=0.1)
    broker.publisher.fail_next = 1
    await store.append("task-1", 0, [ev(), ev()])
    await store.append("task-1", 2, [ev()])
    received = await broker.settle(3)
    assert_in_order_per_stream(received, {"task-1": 3})


async def test_flush_publishes_everything_due(
    opened: StoreFactory, any_store_url: str, broker: Broker
) -> None:
    store = await opened(any_store_url)
    await store.append("task-1", 0, [ev(), ev()])  # no relay attached
    relay = Relay(store, broker.publisher, encode)
    assert await relay.flush() == 2
    await broker.settle(2)
    assert await store.outbox_pending() == 0
