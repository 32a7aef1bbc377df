"""Allocator failover under load, measured: SIGKILL the active allocator replica and time
from the kill to the next TaskAssigned another replica records (issue 16: under 1 s).

The figure is reported (``record``), never asserted: what is asserted is that nothing
is lost or done twice across the takeovers.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.fleet import worker_name
from tests.support.harness import AGENTS, Harness

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(240)]

KILLS = 3


async def active_allocator(h: Harness, since: float) -> str:
    """The replica that recorded the latest assignment after ``since`` (wall clock)."""
    async with asyncio.timeout(30):
        while True:
            events = await h.history.refresh()
            for event in reversed(events):
                if event.recorded_at.timestamp() < since:
                    break
                if event.type == "TaskAssigned":
                    return str(event.metadata.get("replica"))
            await asyncio.sleep(0.1)


async def next_assignment(h: Harness, after: float, victim: str) -> tuple[float, str]:
    """Seconds from ``after`` to the first assignment another replica recorded, and who."""
    async with asyncio.timeout(30):
        while True:
            for event in reversed(await h.history.refresh()):
                if event.recorded_at.timestamp() < after:
                    break
            found = [
                e
                for e in h.history.events
                if e.type == "TaskAssigned"
                and e.recorded_at.timestamp() >= after
                and e.metadata.get("replica") != victim
            ]
            if found:
                first = found[0]
                return first.recorded_at.timestamp() - after, str(first.metadata.get("replica"))
            await asyncio.sleep(0.02)


async def test_killing_the_active_allocator_under_load_fails_over_losing_nothing(
    fault_amqp_url: str,
    sqlite_url: str,
    harness: Callable[..., Harness],
    record: Callable[[dict[str, Any]], None],
) -> None:
    takeovers: list[float] = []
    async with harness(amqp_url=fault_amqp_url, store_url=sqlite_url) as h:
        await h.start(agents=AGENTS)
        stop = asyncio.Event()
        load = asyncio.create_task(h.workload.steady(stop, per_second=60, limit=600))
        for _ in range(KILLS):
            await asyncio.sleep(1.5)
            victim = await active_allocator(h, time.time() - 1.0)
            killed_at = datetime.now(UTC).timestamp()
            h.fleet.kill(worker_name("allocator", victim))
            seconds, by = await next_assignment(h, killed_at, victim)
            takeovers.append(seconds)
            print(f"allocator-{victim} killed: allocator-{by} placed after {seconds:.3f}s")
            h.fleet.restart(worker_name("allocator", victim))
        stop.set()
        await load
        verdict = await h.settle(timeout=90)
        h.assert_no_crash()
    record(
        {
            **verdict.counts,
            "failover_s": [round(s, 3) for s in takeovers],
            "failover_median_s": round(statistics.median(takeovers), 3),
        }
    )
    assert verdict.problems() == []  # lost = duplicated = 0
    assert verdict.ledger.terminal == verdict.ledger.accepted
