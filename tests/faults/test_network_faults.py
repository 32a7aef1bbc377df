"""Case 4 of issue 8: the link between clients and the broker cut, then black-holed.

The client and one agent process reach RabbitMQ through a TCP proxy the test
controls (the workers and the other agents connect directly). A cut is seen
at once; a black hole (the connection stays open, nothing passes) only by the
AMQP heartbeat, so their URL asks for a one-second heartbeat (``?heartbeat=1``)
and the client must notice within the grace aio-pika allows
((heartbeat + 1) × 3 s), before the link comes back. Afterwards everyone is
reconnected, the proxied agents work again, and the history loses and repeats
nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support.harness import AGENTS, Harness
from workers.conformance.proxy import FaultProxy

# a fleet, a fault and a drain: more than the default 120 s when the machine is busy
pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(240)]

HEARTBEAT_S = 1
GRACE_S = (HEARTBEAT_S + 1) * 3  # aio-pika's allowance for missed heartbeats
HOLE_S = GRACE_S + 3.0


def first_after(times: list[float], moment: float) -> float | None:
    return next((t for t in times if t >= moment), None)


async def test_cut_and_blackholed_links_are_detected_and_reconnected_losing_nothing(
    fault_amqp_url: str,
    sqlite_url: str,
    proxy_to: Callable[[str], Awaitable[FaultProxy]],
    harness: Callable[..., Harness],
    record: Callable[[dict[str, Any]], None],
) -> None:
    started = time.monotonic()
    proxy = await proxy_to(fault_amqp_url)
    # the short AMQP heartbeat rides in the URL, as a user would set it in RALLY_AMQP_URL
    far = proxy.url(reconnect_interval=0.5, heartbeat=HEARTBEAT_S)
    async with harness(amqp_url=fault_amqp_url, store_url=sqlite_url, client_url=far) as h:
        await h.start(agents=AGENTS, agent_env={"a": {"RALLY_AMQP_URL": far}})
        assert h.client.conn is not None
        lost_at: list[float] = []
        h.client.conn.connection.close_callbacks.add(lambda *_: lost_at.append(time.monotonic()))
        stop = asyncio.Event()
        load = asyncio.create_task(h.workload.steady(stop, per_second=30, limit=450))

        await asyncio.sleep(1.0)
        cut_at = time.monotonic()
        proxy.cut()
        await asyncio.sleep(1.0)
        proxy.restore()
        await asyncio.sleep(2.0)

        links_before_hole = proxy.accepted
        hole_at = time.monotonic()
        proxy.blackhole()
        await asyncio.sleep(HOLE_S)
        restored_at = time.monotonic()
        proxy.restore()
        mark = (await h.history.refresh())[-1].position
        await asyncio.sleep(2.0)
        stop.set()
        await load
        verdict = await h.settle(timeout=90)
        h.assert_no_crash()
        far_agents = {p.agent_id for p in AGENTS["a"]}
        far_work_after = [
            e
            for e in h.history.of_type("TaskSucceeded")
            if e.position > mark and e.data["agent_id"] in far_agents
        ]
    cut_seen = first_after(lost_at, cut_at)
    hole_seen = first_after(lost_at, hole_at)
    record(
        {
            **verdict.counts,
            "cut_detected_s": round(cut_seen - cut_at, 2) if cut_seen else None,
            "blackhole_detected_s": round(hole_seen - hole_at, 2) if hole_seen else None,
            "links_after_hole": proxy.accepted - links_before_hole,
            "far_agent_successes_after": len(far_work_after),
            "submit_errors": dict(h.workload.errors),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert cut_seen is not None
    assert cut_seen - cut_at < 1.0
    # found by the heartbeat, while the link was still black-holed
    assert hole_seen is not None
    assert hole_seen < restored_at
    assert hole_seen - hole_at <= GRACE_S + 2.0
    assert proxy.accepted > links_before_hole  # the client and the far agents came back
    assert far_work_after  # and the far agents work again
    assert verdict.problems() == []
    assert verdict.ledger.accepted >= 150
    assert verdict.ledger.terminal == verdict.ledger.accepted
