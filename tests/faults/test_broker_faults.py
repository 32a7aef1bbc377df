"""Cases 3 and 5 of issue 8, on a private RabbitMQ node (never the shared one).

3. The broker's application stopped and started under load, then every
   connection closed by the broker, three times: everyone reconnects and
   nothing confirmed is lost or applied twice.
5. A memory alarm while publishing: publishers are blocked; each submit either
   waits and is confirmed after the alarm, or fails with a clear error within
   its time-out (attempts × publish time-out). Nothing confirmed is lost, and
   the copies a blocked publisher retried count once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.harness import AGENTS, Harness
from tests.support.services import PrivateRabbit

# a fleet, a fault and a drain: more than the default 120 s when the machine is busy
pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(240)]


async def test_broker_stopped_started_and_connections_closed_under_load(
    private_rabbit: PrivateRabbit,
    sqlite_url: str,
    harness: Callable[..., Harness],
    record: Callable[[dict[str, Any]], None],
) -> None:
    started = time.monotonic()
    async with harness(amqp_url=private_rabbit.url, store_url=sqlite_url) as h:
        await h.start(agents=AGENTS)
        stop = asyncio.Event()
        load = asyncio.create_task(h.workload.steady(stop, per_second=40, limit=400))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_rabbit.stop_app)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(private_rabbit.start_app)
        for _ in range(3):
            await asyncio.sleep(1.0)
            await asyncio.to_thread(private_rabbit.close_all_connections)
        await asyncio.sleep(1.0)
        stop.set()
        await load
        verdict = await h.settle(timeout=90)
        h.assert_no_crash()
    record(
        {
            **verdict.counts,
            "unconfirmed_submits": len(h.workload.attempted),
            "submit_errors": dict(h.workload.errors),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert verdict.problems() == []
    assert verdict.ledger.accepted >= 150
    assert verdict.ledger.terminal == verdict.ledger.accepted
    assert h.workload.errors  # the faults did bite: some submits were not confirmed


PUBLISH_TIMEOUT_S = 1.0
ALARM_S = 3.0


async def test_memory_alarm_blocks_publishers_within_their_timeout_and_loses_nothing(
    private_rabbit: PrivateRabbit,
    sqlite_url: str,
    harness: Callable[..., Harness],
    record: Callable[[dict[str, Any]], None],
) -> None:
    started = time.monotonic()
    async with harness(
        amqp_url=private_rabbit.url,
        store_url=sqlite_url,
        client_settings={"publish_timeout_s": PUBLISH_TIMEOUT_S},
    ) as h:
        await h.start(agents=AGENTS)
        await h.workload.submit(50)
        confirmed_at: list[float] = []

        async def timed() -> None:
            if await h.workload.submit_one() is not None:
                confirmed_at.append(time.monotonic())

        await asyncio.to_thread(private_rabbit.memory_alarm, True)
        try:
            await asyncio.sleep(0.5)  # the alarm is up: every publishing connection is blocked
            blocked = [asyncio.create_task(timed()) for _ in range(40)]
            await asyncio.sleep(ALARM_S)
        finally:
            lifted_at = time.monotonic()
            await asyncio.to_thread(private_rabbit.memory_alarm, False)
        await asyncio.gather(*blocked)
        await h.workload.submit(100)
        verdict = await h.settle(timeout=90)
        h.assert_no_crash()
    bound = 4 * PUBLISH_TIMEOUT_S + 3.0  # the publisher's attempts × time-out, plus back-off
    record(
        {
            **verdict.counts,
            "confirmed_during_alarm": sum(1 for t in confirmed_at if t < lifted_at),
            "confirmed_after_alarm": sum(1 for t in confirmed_at if t >= lifted_at),
            "submit_errors": dict(h.workload.errors),
            "slowest_submit_s": round(h.workload.slowest_s, 2),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert all(t >= lifted_at for t in confirmed_at)  # the alarm really held publishers back
    assert set(h.workload.errors) <= {"PublishFailed"}  # a clear error, or a confirm
    assert h.workload.slowest_s <= bound  # nobody waited past their time-out
    assert verdict.problems() == []
    assert verdict.ledger.accepted >= 150
    assert verdict.ledger.terminal == verdict.ledger.accepted
