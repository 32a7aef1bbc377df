"""Scrape a worker process's ``--metrics-port`` and an agent's while tasks run: counters move.

The workers run as a real OS process (``python -m workers.runtime.process
--worker all --metrics-port P``), as in production; an SDK agent and client in
this process give them work.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker.connection import BrokerConnection
from broker.settings import BrokerSettings
from sdk import Agent, Client, Task
from tests.support.amqp import publish_bytes
from tests.support.scrape import Scrape

pytestmark = pytest.mark.broker

REPLICA = "7"
WORKER_SERIES = {  # retries have no series until one happens (tested in test_consumer_hooks)
    "rally_messages_handled_total",
    "rally_message_handling_seconds_bucket",
    "rally_dead_letters_total",
    "rally_queue_messages",
    "rally_queue_consumers",
    "rally_tasks",
    "rally_agents",
    "rally_placement_seconds_bucket",
    "rally_resource_capacity",
    "rally_resource_leases",
    "rally_resource_utilisation_ratio",
    "rally_store_append_seconds_bucket",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def worker_port(
    broker: BrokerConnection, broker_settings: BrokerSettings, tmp_path: Path
) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "RALLY_AMQP_URL": broker_settings.amqp_url,
        "RALLY_NAMESPACE": broker_settings.namespace,
        "RALLY_STORE_URL": f"sqlite:///{tmp_path}/rally.db",
        "RALLY_RESOURCES": "gpu=2",
        "RALLY_METRICS_HOST": "127.0.0.1",
        "RALLY_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "workers.runtime.process", "--worker", "all"]
    command += ["--replica", REPLICA, "--metrics-port", str(port)]
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield port
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    assert proc.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]


async def scrape(port: int, *, timeout: float = 30.0) -> Scrape:
    """GET /metrics, waiting for the server to come up."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    assert response.status == 200
                    assert response.headers["Content-Type"].startswith("text/plain")
                    return Scrape(await response.text())
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def run_tasks(client: Client, count: int, **options: Any) -> None:
    handles = [await client.submit("echo", {"i": i}, **options) for i in range(count)]
    for handle in handles:
        await handle.result(timeout=30)


async def test_a_worker_and_an_agent_expose_moving_counters(
    broker: BrokerConnection, sdk_settings: BrokerSettings, worker_port: int
) -> None:
    await scrape(worker_port)  # the worker process is up
    agent = Agent("metrics-agent", capacity=4, settings=sdk_settings, metrics_port=0)
    inbox = broker.topology.inbox_queue("metrics-agent")
    broker.test_queues += [inbox.name, inbox.dlq]  # type: ignore[attr-defined]

    @agent.capability("echo")
    async def echo(task: Task) -> dict[str, Any]:
        return {"echo": task.payload}

    await agent.start()
    try:
        assert agent.metrics_port  # port 0 asked: the one bound is known after start
        async with Client("metrics-client", settings=sdk_settings) as client:
            await run_tasks(client, 3)
            await run_tasks(client, 1, resources=["gpu"])
            first = await scrape(worker_port)
            await run_tasks(client, 4)
            await publish_bytes(
                broker, broker.topology.commands, "tasks.SubmitTask", b"{this is not JSON"
            )
            second = await poll_until(
                worker_port,
                lambda s: (
                    s.value("rally_dead_letters_total", reason="malformed") >= 1
                    and s.value("rally_tasks", state="succeeded") >= 8
                ),
            )
        agent_scrape = await scrape(agent.metrics_port)
    finally:
        await agent.stop(timeout=5)

    mine = {"worker": "tasks", "replica": REPLICA}
    acked = {"type": "SubmitTask", "outcome": "acked", **mine}
    submitted_before = first.value("rally_messages_handled_total", **acked)
    submitted_after = second.value("rally_messages_handled_total", **acked)
    assert submitted_before >= 4
    assert submitted_after >= submitted_before + 4  # the counter moved between scrapes
    count = "rally_store_append_seconds_count"
    assert second.value(count, **mine) > first.value(count, **mine) > 0

    assert second.names() >= WORKER_SERIES
    for name, labels, _ in second.samples:
        if name.startswith("rally_"):
            assert labels.get("replica") == REPLICA, (name, labels)
            # (the read models and retention run inside the worker processes too)
            workers = ("registry", "tasks", "allocator", "readmodels", "retention")
            assert labels.get("worker") in workers, (name, labels)

    allocator = {"worker": "allocator", "replica": REPLICA}
    assert second.value("rally_placement_seconds_count", **allocator) >= 8
    assert second.value("rally_tasks", state="succeeded", **allocator) >= 8
    assert second.value("rally_tasks", state="running", **allocator) == 0
    assert second.value("rally_resource_capacity", resource="gpu", **allocator) == 2
    assert second.value("rally_agents", state="live", worker="registry") == 1
    queue = f"{broker.topology.namespace}.q.tasks"
    assert second.value("rally_queue_consumers", queue=queue, **mine) >= 1

    me = {"worker": "agent", "replica": "metrics-agent"}
    assigned = {"type": "AssignTask", "outcome": "acked", **me}
    assert agent_scrape.value("rally_messages_handled_total", **assigned) == 8
    assert agent_scrape.value("rally_agent_capacity", **me) == 4
    assert agent_scrape.find("rally_queue_messages", queue=inbox.name, **me)


async def poll_until(port: int, ready: Any, timeout: float = 20.0) -> Scrape:
    """Scrape until ``ready(scrape)`` (what the worker counts lags the client by a hop)."""
    deadline = time.monotonic() + timeout
    while True:
        latest = await scrape(port)
        if ready(latest) or time.monotonic() > deadline:
            return latest
        await asyncio.sleep(0.2)
