"""Fixtures of the fault suite: private servers to hurt, a TCP proxy, a fleet per test.

Destructive faults (broker stopped, connections closed, memory alarm, store
stopped) only ever hit the private RabbitMQ node and PostgreSQL server started
here, never the shared ones other tests use; if a private server cannot be
started its tests are skipped with the reason. Faults that hurt only our own
processes (SIGKILL, SIGSTOP, a cut proxy, bad input) run against the shared
broker in a namespace of their own.

Each test records its numbers (accepted / terminal / lost / duplicated ...)
with the ``record`` fixture; they are printed at the end of the run.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import Harness
from tests.support.proxy import FaultProxy
from tests.support.services import PrivatePostgres, PrivateRabbit, ServiceUnavailable
from workers.demo.scenario import AgentPlan

RESULTS = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()

# two agent processes of three agents each: 24 slots
AGENTS: dict[str, list[AgentPlan]] = {
    group: [AgentPlan(f"{group}{i}", ("work",), 4) for i in range(3)] for group in ("a", "b")
}


@pytest.fixture(scope="session")
def private_rabbit() -> Iterator[PrivateRabbit]:
    try:
        node = PrivateRabbit.start()
    except (ServiceUnavailable, OSError) as exc:
        pytest.skip(f"no private RabbitMQ node for destructive faults: {exc}")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres.start()
    except (ServiceUnavailable, OSError) as exc:
        pytest.skip(f"no private PostgreSQL server for the store outage: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/rally.db"


@pytest.fixture
async def proxy_to() -> AsyncIterator[Callable[[str], Any]]:
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
