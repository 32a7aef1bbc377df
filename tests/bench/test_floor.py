"""The floor on the real broker, tiny N: every figure measured, every queue gone afterwards."""

from __future__ import annotations

import uuid

import pytest

from tests.bench.conftest import queue_exists
from workers.bench.floor import FloorOptions, FloorQueues, run_floor

pytestmark = pytest.mark.broker


async def test_floor_measures_publish_consume_and_round_trips(amqp_url: str) -> None:
    prefix = f"rt-{uuid.uuid4().hex[:10]}"
    run = await run_floor(
        amqp_url, FloorOptions(messages=50, window=10, prefetch=20, sequential=5), prefix
    )
    assert run.publish_msgs_per_s > 0
    assert run.consume_msgs_per_s > 0
    assert run.roundtrip_msgs_per_s > 0
    assert 0 < run.p50_ms <= run.p99_ms
    assert run.p50_ms_one_in_flight > 0
    for name in FloorQueues(prefix).names:
        assert not await queue_exists(amqp_url, name), name
