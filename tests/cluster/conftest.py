"""A private three-node RabbitMQ cluster, started once for the cluster tests.

Never the shared broker: these tests stop and kill nodes. If the cluster cannot
be started (no server installed, no ``rabbitmq`` user as root) they are skipped
with the reason. After each test every node is running again and clustered.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

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
