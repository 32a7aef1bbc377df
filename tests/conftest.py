"""Shared fixtures: a real RabbitMQ with an isolated namespace per test.

The broker comes from RALLY_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/);
where nothing answers there and a Docker engine does, a RabbitMQ container is
started with testcontainers. Each test gets its own namespace (``rt-<hex>``):
its exchanges and queues are deleted afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.publisher import Publisher
from broker.settings import DEFAULT_AMQP_URL, BrokerSettings
from broker.topology import Topology

TEST_PREFIX = "rt-"


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = os.environ.get("RALLY_AMQP_URL", DEFAULT_AMQP_URL)
    if _reachable(url):
        yield url
        return
    if not _docker_answers():
        pytest.skip(f"no RabbitMQ at {url} and no Docker engine for testcontainers")
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-management") as container:
        params = container.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/"


def known_queues(topology: Topology) -> list[str]:
    names = [q.name for q in topology.delay_queues()] + [topology.shared_dlq]
    for worker in ("registry", "tasks", "allocator", "test"):
        name = topology.worker_queue(worker)
        names += [name, f"{name}.dlq"]
    return names


@pytest.fixture
def namespace() -> str:
    return f"{TEST_PREFIX}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def broker_settings(amqp_url: str, namespace: str) -> BrokerSettings:
    return BrokerSettings(
        amqp_url=amqp_url,
        namespace=namespace,
        retry_initial_s=0.05,
        max_attempts=3,
        publish_timeout_s=5,
    )


@pytest.fixture
async def broker(broker_settings: BrokerSettings) -> AsyncIterator[BrokerConnection]:
    """A connection with the namespace's topology declared; everything removed afterwards."""
    conn = await BrokerConnection(broker_settings, role="test").connect()
    await declare_topology(conn)
    extra: list[str] = []
    conn.test_queues = extra  # type: ignore[attr-defined]  # tests add inbox queues here
    try:
        yield conn
    finally:
        names = [*known_queues(conn.topology), *conn._queues, *extra]
        await delete_namespace(conn, sorted(set(names)))
        await conn.close()


@pytest.fixture
async def publisher(broker: BrokerConnection) -> Publisher:
    return await Publisher(broker, sender="test").start()
