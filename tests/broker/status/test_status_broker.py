"""`rally status --json` scaling signals against the real broker and a real store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.publisher import Publisher
from broker.settings import BrokerSettings
from contracts import SubmitTask
from workers.cli.status_cmd import collect
from workers.queue_signals import sample_scaling
from workers.runtime.services import run_services
from workers.runtime.settings import WorkerSettings
from workers.store import open_store

pytestmark = pytest.mark.broker

RALLY = sys.executable.replace("/python", "/rally") if "/bin/python" in sys.executable else "rally"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/rally.db"


async def declare_tasks_queue(conn: BrokerConnection) -> str:
    channel = await conn.channel(confirms=False)
    try:
        queue = await declare_queue(conn, channel, conn.topology.work_queue("tasks"))
        return queue.name
    finally:
        await channel.close()


async def submit(publisher: Publisher, count: int) -> None:
    # a capability no agent has: the tasks worker records each one and places none; the key
    # makes each submit two events (the task's and its key's) under one causing message.
    # One at a time, so each is a broker message of its own (sent together they would share
    # one bundle, and the queue's depth counts broker messages)
    for _ in range(count):
        await publisher.send(SubmitTask(capability="nobody-has-it", idempotency_key=str(uuid4())))


@contextlib.asynccontextmanager
async def steady_stream(publisher: Publisher, every_s: float = 0.02) -> AsyncIterator[list[int]]:
    """Submit one task every ``every_s`` for as long as the block runs; yields the count."""
    sent = [0]

    async def loop() -> None:
        while True:
            await submit(publisher, 1)
            sent[0] += 1
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop())
    try:
        yield sent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def by_queue(scaling: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["queue"]: q for q in scaling["queues"]}


async def test_a_backlog_without_consumers_asks_for_more_replicas_than_it_has(
    broker: BrokerConnection, publisher: Publisher, broker_settings: BrokerSettings, store_url: str
) -> None:
    tasks_queue = await declare_tasks_queue(broker)
    await submit(publisher, 30)
    env = {
        **os.environ,
        "RALLY_AMQP_URL": broker_settings.amqp_url,
        "RALLY_NAMESPACE": broker_settings.namespace,
        "RALLY_STORE_URL": store_url,
        "RALLY_LOG_LEVEL": "WARNING",
    }
    env.pop("RALLY_MANAGEMENT_URL", None)
    async with steady_stream(publisher) as sent:
        proc = await asyncio.create_subprocess_exec(
            *(RALLY, "status", "--json", "--interval", "1.0", "--drain-target", "20"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    status = json.loads(out)
    assert {"queues", "agents", "tasks", "dead_letters", "scaling"} <= set(status)
    # the keys it printed before scaling signals are still there, as they were
    listed = next(q for q in status["queues"] if q["queue"] == tasks_queue)
    assert set(listed) == {"queue", "messages", "consumers"}
    assert listed["messages"] >= 30
    assert listed["consumers"] == 0

    scaling = status["scaling"]
    assert scaling["rate_source"] == "store"
    assert scaling["drain_target_s"] == 20
    assert scaling["interval_s"] >= 1.0
    tasks = by_queue(scaling)[tasks_queue]
    assert tasks["worker"] == "tasks"
    assert tasks["mode"] == "competing"
    assert tasks["consumers"] == 0
    assert 30 < tasks["depth"] <= 30 + sent[0]
    assert tasks["ack_rate"] == 0.0  # nobody handled anything
    # published inside the window, at most everything the stream sent over the window
    assert 0 < tasks["publish_rate"] <= sent[0] / scaling["interval_s"]
    assert tasks["suggested_replicas"] > tasks["consumers"]

    dlq = by_queue(scaling)[f"{tasks_queue}.dlq"]
    assert (dlq["mode"], dlq["depth"], dlq["ack_rate"]) == ("dead-letter", 0, None)
    assert dlq["suggested_replicas"] == 0
    # the registry and allocator never started here: their queues do not exist to report
    assert {q["worker"] for q in scaling["queues"]} == {"tasks"}


async def test_a_running_worker_shows_as_a_consumer_with_an_ack_rate(
    broker: BrokerConnection,
    publisher: Publisher,
    broker_settings: BrokerSettings,
    store_url: str,
) -> None:
    tasks_queue = await declare_tasks_queue(broker)
    await submit(publisher, 300)
    settings = WorkerSettings(broker=broker_settings, store_url=store_url)
    store = open_store(store_url)
    await store.start()
    try:
        async with run_services(settings, workers=["tasks"], replica="0"):
            async with asyncio.timeout(30):
                while await store.last_position() == 0:  # noqa: ASYNC110 - polling the store
                    await asyncio.sleep(0.05)
            # keep work arriving, so the window sees handling however fast the backlog went
            async with steady_stream(publisher) as sent:
                report = await sample_scaling(broker, store, interval_s=1.0)
    finally:
        await store.close()
    tasks = next(q for q in report.queues if q.queue.name == tasks_queue)
    assert tasks.sample.consumers == 1
    assert tasks.rates.ack_rate is not None
    assert tasks.rates.ack_rate > 0
    # messages, not events: each submit appended two events under its one message id
    assert tasks.rates.ack_rate * report.interval_s <= 300 + sent[0]
    assert 1 <= tasks.suggested_replicas <= report.policy.max_replicas


async def test_an_unreachable_management_api_falls_back_to_the_store_and_says_so(
    broker: BrokerConnection, broker_settings: BrokerSettings, store_url: str
) -> None:
    await declare_tasks_queue(broker)
    status = await collect(
        store_url,
        broker_settings,
        interval_s=0.2,
        management_url="http://guest:secret@127.0.0.1:1",
    )
    scaling = status["scaling"]
    assert scaling["rate_source"] == "store"
    assert len(scaling["notes"]) == 1
    assert "management API" in scaling["notes"][0]
    assert "secret" not in scaling["notes"][0]  # the password is redacted
    assert [q["worker"] for q in scaling["queues"]] == ["tasks", "tasks"]


async def test_every_registry_shard_queue_is_watched(
    broker: BrokerConnection, broker_settings: BrokerSettings, store_url: str
) -> None:
    # three shards' queues, as a sharded registry declares them; nothing says how many run
    channel = await broker.channel(confirms=False)
    try:
        for shard in range(3):
            await declare_queue(broker, channel, broker.topology.registry_queue(shard, 3))
    finally:
        await channel.close()
    status = await collect(store_url, broker_settings, interval_s=0.2)
    names = {q["queue"] for q in status["queues"]}
    watched = {q["queue"] for q in status["scaling"]["queues"]}
    shards = {broker.topology.registry_queue(k, 3).name for k in range(3)}
    assert shards <= names
    assert shards | {f"{n}.dlq" for n in shards} <= watched
    assert broker.topology.registry_queue(3, 4).name not in watched  # the count stops there
