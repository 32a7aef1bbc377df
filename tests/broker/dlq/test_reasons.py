"""Every way a message dies, on the real broker, ends in the archive and `show` explains it.

The consumer runtime (broker/consumer.py) dead-letters all but one of them;
the last, the delivery limit, is RabbitMQ's own doing.
"""

from __future__ import annotations

import aio_pika
import pytest

import contracts as c
from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.publisher import Publisher
from broker.topology import QueueSpec
from tests.broker.dlq.conftest import Rally, StartWorker
from tests.broker.dlq.scenario import TestWorker, authorize, dlq_depth, envelope, raw, until
from tests.support.amqp import depth, publish_bytes

pytestmark = pytest.mark.broker

TASK_KEY = "tasks.SubmitTask"

# reason → (routing key, body, what `show` must say)
CASES: dict[str, tuple[str, bytes, str]] = {
    "malformed": (TASK_KEY, b'{"type": "SubmitTask", oops', "the body is not JSON: "),
    "invalid": (
        "registry.RegisterAgent",
        raw(
            envelope(
                c.RegisterAgent(agent_id="a1", capabilities=("crawl",), capacity=1),
                payload={"agent_id": "a1", "capabilities": ["crawl"], "capacity": 0},
            )
        ),
        "field payload.capacity: Input should be greater than or equal to 1",
    ),
    "unknown_type": (
        TASK_KEY,
        raw(envelope(c.SubmitTask(capability="crawl"), type="LaunchRocket")),
        "knows the message type LaunchRocket",
    ),
    "unknown_version": (
        TASK_KEY,
        raw(envelope(c.SubmitTask(capability="crawl"), version=99)),
        "SubmitTask version 99 is newer than this code reads",
    ),
    "too_large": (
        TASK_KEY,
        raw(envelope(c.SubmitTask(capability="crawl", payload={"blob": "x" * 5000}))),
        "larger than the size limit",
    ),
    "handler_error": (
        TASK_KEY,
        raw(envelope(c.SubmitTask(capability="boom"))),
        "the handler raised ValueError 3 times: boom: the parser chokes on this input",
    ),
    "retries_exhausted": (
        TASK_KEY,
        raw(envelope(c.SubmitTask(capability="wait"))),
        "asked for a retry on all 3 attempts: waiting for a gpu",
    ),
    "rejected": (
        TASK_KEY,
        raw(envelope(c.SubmitTask(capability="refuse"))),
        "rejected it as a permanent failure: the task was already cancelled",
    ),
    "security": (
        TASK_KEY,
        raw(envelope(c.SubmitTask(capability="crawl"), sender="mallory")),
        "a security check refused it",
    ),
}


@pytest.mark.parametrize("reason", list(CASES))
async def test_each_reason_is_archived_and_explained(
    reason: str,
    broker: BrokerConnection,
    work_spec: QueueSpec,
    start_worker: StartWorker,
    rally: Rally,
) -> None:
    routing_key, body, explanation = CASES[reason]
    await start_worker(TestWorker().router, authorize=authorize)
    await publish_bytes(broker, broker.topology.commands, routing_key, body, message_id="m-1")
    await until(lambda: _one_dead(broker, work_spec))

    listed = (await rally("dlq", "list", "--json")).json()
    assert [(x["reason"], x["queue"]) for x in listed] == [(reason, work_spec.name)]
    assert await depth(broker, work_spec.dlq) == 0  # moved, not browsed

    shown = (await rally("dlq", "show", listed[0]["id"], "--json")).json()
    why = " ".join([shown["explanation"]["summary"], *shown["explanation"]["details"]])
    assert explanation in why
    assert shown["body"] == body.decode()
    assert shown["origin"]["exchange"] == broker.topology.commands
    assert shown["origin"]["routing_key"] == routing_key
    assert shown["dead_lettered_by"] == "rallypoint"
    assert shown["replica"] == "r1"


async def test_rabbitmqs_delivery_limit_is_explained(
    broker: BrokerConnection, publisher: Publisher, work_spec: QueueSpec, rally: Rally
) -> None:
    """A consumer that keeps handing the message back (as a crashing worker does):
    the quorum queue dead-letters it past x-delivery-limit (2 here)."""
    channel = await broker.channel(confirms=False, prefetch=1)
    queue = await declare_queue(broker, channel, work_spec)
    envelope_sent = await publisher.send(c.SubmitTask(capability="crawl"))
    returned = 0

    async def hand_back(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal returned
        returned += 1
        await message.nack(requeue=True)

    await queue.consume(hand_back)
    await until(lambda: _one_dead(broker, work_spec))
    await channel.close()

    listed = (await rally("dlq", "list", "--json")).json()
    assert [(x["reason"], x["type"]) for x in listed] == [("delivery_limit", "SubmitTask")]
    shown = (await rally("dlq", "show", listed[0]["id"], "--json")).json()
    assert shown["explanation"]["summary"] == (
        "RabbitMQ gave up after 3 deliveries (the worker died or timed out while handling it)"
    )
    assert returned == 3 == shown["attempts"]
    assert shown["dead_lettered_by"] == "rabbitmq"
    assert shown["message_id"] == str(envelope_sent.id)
    assert shown["origin"] == {
        "exchange": broker.topology.commands,
        "routing_key": TASK_KEY,
        "queue": work_spec.name,
    }
    assert shown["headers"]["x-death"][0]["reason"] == "delivery_limit"


async def test_show_for_people(
    broker: BrokerConnection, work_spec: QueueSpec, start_worker: StartWorker, rally: Rally
) -> None:
    await start_worker(TestWorker().router)
    body = raw(envelope(c.SubmitTask(capability="boom", payload={"url": "https://x.test/1"})))
    await publish_bytes(broker, broker.topology.commands, TASK_KEY, body, message_id="m-1")
    await until(lambda: _one_dead(broker, work_spec))

    listing = await rally("dlq", "list")
    assert "handler_error" in listing.out
    assert "1 dead letter: handler_error 1" in listing.out
    (letter_id,) = [x["id"] for x in (await rally("dlq", "list", "--json")).json()]
    shown = " ".join((await rally("dlq", "show", letter_id[:6])).out.split())
    assert "The handler raised ValueError 3 times" in shown
    assert "What to do:" in shown
    assert '"url": "https://x.test/1"' in shown  # the payload, pretty-printed


async def _one_dead(broker: BrokerConnection, spec: QueueSpec) -> bool:
    return await dlq_depth(broker, spec.dlq) >= 1
