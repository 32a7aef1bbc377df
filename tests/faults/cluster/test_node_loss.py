"""Issue 17: any one node of a 3-node cluster lost under load loses no task.

The workers (two replicas each), two SDK agent processes and a client are all
given the three nodes (RALLY_AMQP_URL's node list); tasks flow at 40/s while a
node is stopped or killed. Verdict from the history: lost = duplicated =
unexpected = 0, accepted = terminal, submits accepted after the fault, and the
longest pause in completions is measured (recorded, bounded only by the run).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import ClusterNode, PrivateCluster
from tests.support.harness import AGENTS, Harness

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(420)]

RATE = 40.0
LIMIT = 640  # 16 s of load
FAULT_AFTER_S = 4.0
DOWN_S = 5.0  # scenario "back": how long the node stays down


def completion_pause(h: Harness, since: datetime) -> float:
    """The longest time without a task completing, from ``since`` to the last completion."""
    done = sorted(e.recorded_at for e in h.history.of_type("TaskSucceeded"))
    times = [since, *(t for t in done if t > since)]
    return max((b - a).total_seconds() for a, b in itertools.pairwise(times))


async def run_with_fault(
    cluster: PrivateCluster, tmp_path: Path, fault: Callable[[Harness], ClusterNode], back: bool
) -> dict[str, Any]:
    h = Harness(amqp_url=cluster.url, store_url=f"sqlite:///{tmp_path}/rally.db",
                log_dir=tmp_path / "logs")  # fmt: skip
    async with h:
        await h.start(agents=AGENTS, replicas=2)
        stop = asyncio.Event()
        load = asyncio.create_task(h.workload.steady(stop, per_second=RATE, limit=LIMIT))
        await asyncio.sleep(FAULT_AFTER_S)
        fault_at = datetime.now(UTC)
        accepted_at_fault = len(h.workload.accepted)
        hurt = await asyncio.to_thread(fault, h)  # a clean stop takes seconds: load goes on
        fault_s = (datetime.now(UTC) - fault_at).total_seconds()
        if back:
            await asyncio.sleep(DOWN_S)
            await asyncio.to_thread(hurt.restart)
        await load
        started = time.monotonic()
        verdict = await h.settle(timeout=120)
        h.assert_no_crash()
        await h.history.refresh()
        after = len(h.workload.accepted) - accepted_at_fault
        numbers: dict[str, Any] = {
            **verdict.counts,
            "node": hurt.name.split("@")[0],
            "accepted_after_fault": after,
            "submit_errors": dict(h.workload.errors),
            "completions_paused_s": round(completion_pause(h, fault_at), 2),
            "fault_took_s": round(fault_s, 1),
            "drain_s": round(time.monotonic() - started, 1),
        }
        assert verdict.problems() == [], numbers
        assert verdict.ledger.terminal == verdict.ledger.accepted, numbers
        assert after > 0, numbers
        return numbers


def stop_task_managers_node(cluster: PrivateCluster) -> Callable[[Harness], ClusterNode]:
    def fault(h: Harness) -> ClusterNode:
        node = cluster.node_of("rally:tasks:0:")
        node.stop()
        return node

    return fault


def kill_tasks_queue_leader(cluster: PrivateCluster) -> Callable[[Harness], ClusterNode]:
    def fault(h: Harness) -> ClusterNode:
        node = cluster.leader_of(f"{h.namespace}.q.tasks")
        node.kill()
        return node

    return fault


def stop_clients_node(cluster: PrivateCluster) -> Callable[[Harness], ClusterNode]:
    def fault(h: Harness) -> ClusterNode:
        node = cluster.node_of(f"rally:client:{h.client.client_id}:")
        node.stop()
        return node

    return fault


@pytest.mark.parametrize(
    ("scenario", "make_fault", "back"),
    [
        ("stop the task manager's node", stop_task_managers_node, False),
        ("kill -9 the tasks queue's leader", kill_tasks_queue_leader, False),
        ("stop the client's node, then bring it back", stop_clients_node, True),
    ],
)
async def test_one_node_lost_under_load_loses_no_task(
    cluster: PrivateCluster,
    tmp_path: Path,
    record: Callable[[dict[str, Any]], None],
    scenario: str,
    make_fault: Callable[[PrivateCluster], Callable[[Harness], ClusterNode]],
    back: bool,
) -> None:
    numbers = await run_with_fault(cluster, tmp_path, make_fault(cluster), back)
    record({"scenario": scenario, **numbers})
