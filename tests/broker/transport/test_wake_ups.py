"""Wake-up types: a worker that reads the store hears of an event without decoding it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.publisher import Publisher
from broker.router import Incoming, Router
from tests.support.amqp import eventually, publish_bytes, take

pytestmark = pytest.mark.broker


async def test_a_service_users_event_wakes_without_decoding_and_anyone_elses_is_checked(
    broker: BrokerConnection, publisher: Publisher
) -> None:
    spec = broker.topology.work_queue("wakes", command_keys=("wakes.#",))
    woken: list[str] = []
    batched: list[Incoming[Any]] = []

    async def batch(items: Sequence[Incoming[Any]]) -> None:
        batched.extend(items)

    consumer = Consumer(
        broker,
        spec,
        Router(),
        publisher,
        worker="wakes",
        replica="0",
        batch_handler=batch,
        batch_types=("TaskSucceeded",),
        wake_types=("TaskSucceeded",),
        on_wake=woken.append,
    )
    await consumer.start()
    try:
        # not even JSON: a wake-up is never decoded, so its body cannot fail it
        await publish_bytes(
            broker, broker.topology.commands, "wakes.x", b"{", type="TaskSucceeded", user_id="guest"
        )
        await eventually(lambda: woken == ["TaskSucceeded"])
        # the same without a broker-vouched service user takes the usual path: decoded, refused
        await publish_bytes(broker, broker.topology.commands, "wakes.x", b"{", type="TaskSucceeded")
        [dead] = await take(broker, spec.dlq, 1)
        assert dead.headers["x-rally-reason"] == "malformed"
        assert woken == ["TaskSucceeded"]
        assert batched == []
    finally:
        await consumer.stop(timeout=5)


def test_wake_types_need_a_callback(broker: BrokerConnection, publisher: Publisher) -> None:
    with pytest.raises(ValueError, match="on_wake"):
        Consumer(
            broker,
            broker.topology.work_queue("wakes"),
            Router(),
            publisher,
            worker="wakes",
            replica="0",
            wake_types=("TaskSucceeded",),
        )
