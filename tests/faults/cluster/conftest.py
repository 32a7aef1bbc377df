"""A private three-node RabbitMQ cluster, started once for the cluster tests.

Never the shared broker: these tests stop and kill nodes. If the cluster cannot
be started (no server installed, no ``rabbitmq`` user as root) they are skipped
with the reason. After each test every node is running again and clustered.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.cluster import PrivateCluster
from tests.support.services import ServiceUnavailable


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[PrivateCluster]:
    try:
        cluster = PrivateCluster.start()
    except (ServiceUnavailable, OSError, subprocess.SubprocessError, RuntimeError) as exc:
        pytest.skip(f"no private RabbitMQ cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def cluster(private_cluster: PrivateCluster) -> Iterator[PrivateCluster]:
    """The cluster, with every node brought back after the test whatever it did to them."""
    yield private_cluster
    for node in private_cluster.nodes:
        if not node.running:
            node.restart()


RESULTS = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[dict[str, Any]], None]:
    """Keep a test's numbers (lost, duplicated, pause in completions...) for the summary."""

    def keep(numbers: dict[str, Any]) -> None:
        request.config.stash.setdefault(RESULTS, []).append((request.node.name, numbers))

    return keep


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS, [])
    if results:
        terminalreporter.section("cluster node loss: numbers")
        for name, numbers in results:
            terminalreporter.write_line(f"{name}: {json.dumps(numbers, sort_keys=True)}")
