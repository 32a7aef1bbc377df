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
    assert all(p.poll() is not None for p in processes)  # every process stopped
    assert not await exchange_exists(amqp_url, f"{namespace}.commands")
    assert not await queue_exists(amqp_url, f"{namespace}.q.tasks")
    assert not await queue_exists(amqp_url, inbox)
    assert not (tmp_path / namespace).exists()  # the store went with the run
