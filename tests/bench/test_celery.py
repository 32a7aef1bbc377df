"""The Celery peer on the real broker, tiny N: tasks/s measured, its queue and exchanges gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.bench.conftest import exchange_exists, queue_exists
from workers.bench import celery_peer
from workers.bench.celery_app import exchanges
from workers.bench.celery_peer import CeleryOptions, run_celery

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_celery_runs_no_op_tasks_and_cleans_up(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues: list[str] = []
    real_delete = celery_peer._delete

    def remember(app: object, queue: str) -> None:
        queues.append(queue)
        real_delete(app, queue)

    monkeypatch.setattr(celery_peer, "_delete", remember)
    options = CeleryOptions(tasks=50, warmup=5, sequential=5, timeout_s=120, scratch=tmp_path)
    run = await asyncio.to_thread(run_celery, amqp_url, options)
    assert run.tasks == 50
    assert run.tasks_per_s > 0
    assert run.pool == "threads"
    assert run.worker_peak_rss_mib is not None
    assert run.worker_peak_rss_mib > 0
    assert run.p50_ms_one_in_flight is not None
    assert run.p50_ms_one_in_flight > 0
    (queue,) = queues
    assert not await queue_exists(amqp_url, queue)
    for exchange in exchanges(queue):
        assert not await exchange_exists(amqp_url, exchange), exchange
