"""Fixtures of the fault suite: private servers to hurt, a TCP proxy, a fleet per test.

Destructive faults (broker stopped, connections closed, memory alarm, store
stopped) only ever hit the private RabbitMQ node and PostgreSQL server started
here, never the shared ones other tests use; if a private server cannot be
started those tests are skipped with the reason. Faults that hurt only our own
processes (SIGKILL, SIGSTOP, a cut proxy, bad input) run on the private node
too when there is one, else on RALLY_AMQP_URL, in a namespace of their own.

Each test records its numbers (accepted / terminal / lost / duplicated ...)
with the ``record`` fixture; they are printed at the end of the run.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.settings import BrokerSettings
from tests.support.fixtures.broker import known_queues
from tests.support.harness import Harness
from tests.support.services import PrivatePostgres, PrivateRabbit, ServiceUnavailable
from workers.conformance.proxy import FaultProxy

RESULTS = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()


@pytest.fixture(scope="session")
def private_node() -> Iterator[PrivateRabbit | str]:
    """A RabbitMQ node of our own, or why there is none."""
    try:
        node = PrivateRabbit.start()
    except (ServiceUnavailable, OSError, subprocess.SubprocessError) as exc:
        yield f"no private RabbitMQ node: {exc}"
        return
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def private_rabbit(private_node: PrivateRabbit | str) -> PrivateRabbit:
    """For the destructive faults: never the shared broker."""
    if isinstance(private_node, str):
        pytest.skip(private_node)
    return private_node


@pytest.fixture(scope="session")
def fault_amqp_url(private_node: PrivateRabbit | str, request: pytest.FixtureRequest) -> str:
    """Where the other faults run: the private node too when there is one (our load and
    our hundreds of quorum queues stay off the broker other suites share), else
    RALLY_AMQP_URL in a namespace of our own."""
    if isinstance(private_node, PrivateRabbit):
        return private_node.url
    return str(request.getfixturevalue("amqp_url"))


@pytest.fixture
async def fault_broker(fault_amqp_url: str) -> AsyncIterator[BrokerConnection]:
    """A connection with a fresh namespace's topology declared; all of it deleted afterwards."""
    settings = BrokerSettings(
        amqp_url=fault_amqp_url,
        namespace=f"rt-{uuid.uuid4().hex[:10]}",
        retry_initial_s=0.05,
        max_attempts=3,
        publish_timeout_s=5,
    )
    conn = await BrokerConnection(settings, role="test").connect()
    await declare_topology(conn)
    try:
        yield conn
    finally:
        await delete_namespace(conn, sorted({*known_queues(conn.topology), *conn._queues}))
        await conn.close()


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres.start()
    except (ServiceUnavailable, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no private PostgreSQL server for the store outage: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/rally.db"


@pytest.fixture
async def proxy_to() -> AsyncIterator[Callable[[str], Awaitable[FaultProxy]]]:
    proxies: list[FaultProxy] = []

    async def start(target_url: str) -> FaultProxy:
        proxy = await FaultProxy(target_url).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.close()


@pytest.fixture
def harness(tmp_path: Path) -> Callable[..., Harness]:
    def make(**kwargs: Any) -> Harness:
        kwargs.setdefault("log_dir", tmp_path / "logs")
        return Harness(**kwargs)

    return make


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[dict[str, Any]], None]:
    """Keep a test's numbers for the summary at the end of the run."""

    def keep(numbers: dict[str, Any]) -> None:
        request.config.stash.setdefault(RESULTS, []).append((request.node.name, numbers))

    return keep


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS, [])
    if not results:
        return
    terminalreporter.section("fault injection: numbers")
    for name, numbers in results:
        terminalreporter.write_line(f"{name}: {json.dumps(numbers, sort_keys=True)}")
