"""rallypoint end to end, tiny N: worker replicas and agents as processes, then nothing left."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import exchange_exists, queue_exists
from workers.bench.fleet import FleetShape, rally_fleet
from workers.bench.rallypoint import RallyOptions, measure

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_rallypoint_measures_throughput_latency_and_memory(
    amqp_url: str, tmp_path: Path
) -> None:
    shape = FleetShape(replicas=1, agents=1, agent_capacity=32, scratch=tmp_path)
    options = RallyOptions(tasks=50, window=20, sequential=5, warmup=5, timeout_s=120)
    async with rally_fleet(amqp_url, shape) as fleet:
        processes = [*fleet.fleet.workers, *fleet.agents.values()]
        run = await measure(fleet, options, shape.replicas)
        namespace = fleet.namespace
        inbox = f"{namespace}.inbox.{next(iter(fleet.agents))}"
    assert run.tasks_per_s > 0
    assert 0 < run.p50_ms <= run.p99_ms
    assert run.p50_ms_one_in_flight is not None
    assert run.p50_ms_one_in_flight > 0
    assert set(run.worker_peak_rss_mib) == {"registry-0", "tasks-0", "allocator-0"}
    assert len(run.agent_peak_rss_mib) == 1
    # the cost of a task, counted by the fleet itself: a plain task is published, delivered,
    # appended and recorded; every process kind ran on the CPU
    for figure in ("publishes", "deliveries", "appends", "events", "broker_publishes"):
        assert run.per_task[figure] > 0, figure
    assert run.per_task["unroutable"] is not None
    assert run.per_task["publishes_by_type"]["SubmitTask"] >= 1
    assert set(run.per_task["appends_by_worker"]) >= {"tasks"}
    for kind in ("tasks", "allocator", "agent", "client"):
        assert run.cpu_ms_per_task[kind] is not None, kind
    assert all(p.poll() is not None for p in processes)  # every process stopped
    assert not await exchange_exists(amqp_url, f"{namespace}.commands")
    assert not await queue_exists(amqp_url, f"{namespace}.q.tasks")
    assert not await queue_exists(amqp_url, inbox)
    assert not (tmp_path / namespace).exists()  # the store went with the run
