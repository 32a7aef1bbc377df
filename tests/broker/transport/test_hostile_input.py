"""Issue 14, cases 6-8: bad input from a raw AMQP publisher against the real workers.

NaN and Infinity are ``malformed`` at once (one delivery, no retries), alone or in a
bundle; a valid command in a queue that does not handle it is dead-lettered
``unknown_type`` on a batch worker too; a bundle of 10,000 bad members is dead-lettered
whole (``too_large``) and a valid message behind it is still handled.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import uuid4

import pytest

from broker import headers as h
from broker.connection import BrokerConnection
from contracts import (
    BUNDLE_CONTENT_TYPE,
    BundleMember,
    Envelope,
    SubmitTask,
    encode,
    encode_bundle,
)
from tests.support.amqp import Taken, publish_bytes, take
from workers.runtime.messages import load_event
from workers.runtime.services import Running

pytestmark = pytest.mark.broker


def dlq(conn: BrokerConnection, worker: str) -> str:
    return f"{conn.topology.worker_queue(worker)}.dlq"


async def recorded(fleet: Running, task_id: object, timeout: float = 30.0) -> list[str]:
    store: Any = fleet.store
    deadline = time.monotonic() + timeout
    while True:
        found = [type(load_event(r)).__name__ for r in await store.read(f"task-{task_id}")]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def submit_json(payload_literal: str) -> bytes:
    """A SubmitTask whose payload is written by hand (json.dumps would refuse NaN)."""
    head = json.dumps(
        {
            "id": str(uuid4()),
            "type": "SubmitTask",
            "version": 1,
            "correlation_id": str(uuid4()),
            "sender": "mallory",
        }
    )
    inner = f'{{"task_id": "{uuid4()}", "capability": "work", "payload": {payload_literal}}}'
    return f'{head[:-1]}, "payload": {inner}}}'.encode()


def attempts(letter: Taken) -> int:
    return int(letter.headers[h.DL_ATTEMPTS])


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", '{"x": [1, NaN]}'])
async def test_nan_and_infinity_are_malformed_after_one_delivery(
    fleet: Running, broker: BrokerConnection, literal: str
) -> None:
    # before: decoded, then the handler failed to store it: five tries, handler_error
    alone = submit_json(literal)
    await publish_bytes(
        broker, broker.topology.commands, "tasks.SubmitTask", alone, message_id="alone"
    )
    bundled = BundleMember(submit_json(literal), message_id="member", type="SubmitTask")
    await publish_bytes(
        broker,
        broker.topology.commands,
        "tasks.SubmitTask",
        encode_bundle([bundled]),
        content_type=BUNDLE_CONTENT_TYPE,
    )
    letters = await take(broker, dlq(broker, "tasks"), 2, timeout=30)
    assert sorted((m.message_id, str(m.headers[h.DL_REASON])) for m in letters) == [
        ("alone", "malformed"),
        ("member", "malformed"),
    ]
    assert [attempts(m) for m in letters] == [1, 1]


async def test_a_valid_command_in_a_batch_workers_queue_it_does_not_handle_is_dead_lettered(
    fleet: Running, broker: BrokerConnection
) -> None:
    # before: the allocator's batch consumer acked and dropped it, with no line anywhere
    task = SubmitTask(capability="work")
    body = encode(Envelope.wrap(task, sender="mallory"))
    await publish_bytes(
        broker, broker.topology.commands, "allocator.SubmitTask", body, message_id="stray"
    )
    (letter,) = await take(broker, dlq(broker, "allocator"), 1, timeout=30)
    assert letter.message_id == "stray"
    assert letter.headers[h.DL_REASON] == "unknown_type"
    assert "has no handler for SubmitTask" in str(letter.headers[h.DL_ERROR])
    assert await recorded(fleet, task.task_id, timeout=0.5) == []


async def test_a_bundle_of_ten_thousand_bad_members_is_dead_lettered_whole(
    fleet: Running, broker: BrokerConnection
) -> None:
    bad = [BundleMember(b"{", message_id=f"bad-{i}", type="SubmitTask") for i in range(10_000)]
    await publish_bytes(
        broker,
        broker.topology.commands,
        "tasks.SubmitTask",
        encode_bundle(bad),
        message_id="big",
        content_type=BUNDLE_CONTENT_TYPE,
    )
    task = SubmitTask(capability="work")
    valid = encode(Envelope.wrap(task, sender="client"))
    await publish_bytes(
        broker, broker.topology.commands, "tasks.SubmitTask", valid, message_id=str(uuid4())
    )
    assert (await recorded(fleet, task.task_id))[:1] == ["TaskSubmitted"]
    letters = await take(broker, dlq(broker, "tasks"), 10_000, timeout=30)
    assert len(letters) == 10_000  # one dead letter: the bundle, whole
    assert {str(m.headers[h.DL_REASON]) for m in letters} == {"too_large"}
    assert "more than 1024 members" in str(letters[0].headers[h.DL_ERROR])
