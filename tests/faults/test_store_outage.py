"""Case 10 of issue 8: the event store (a private PostgreSQL) stopped for a while, then started.

While the store is down no handler can load or append, so no delivery may be
acked as handled: each is retried until the store is back. Nothing accepted
may be lost (in particular, nothing may be dead-lettered for want of a
store), no worker may stop, and nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from broker.inspect import queue_stats
from tests.faults.conftest import AGENTS
from tests.support.harness import Harness
from tests.support.services import PrivatePostgres

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.postgres]

OUTAGE_S = 6.0


async def test_store_down_for_a_while_delays_work_but_loses_none(
    amqp_url: str,
    private_pg: PrivatePostgres,
    harness: Callable[..., Harness],
    record: Callable[[dict[str, Any]], None],
) -> None:
    started = time.monotonic()
    store_url = f"{private_pg.url}?schema=faults_{uuid.uuid4().hex[:8]}"
    async with harness(amqp_url=amqp_url, store_url=store_url) as h:
        await h.start(agents=AGENTS)
        stop = asyncio.Event()
        load = asyncio.create_task(h.workload.steady(stop, per_second=30, limit=400))
        await asyncio.sleep(2.0)
        await asyncio.to_thread(private_pg.halt)
        try:
            await asyncio.sleep(OUTAGE_S)
        finally:
            await asyncio.to_thread(private_pg.resume)
        await asyncio.sleep(2.0)
        stop.set()
        await load
        verdict = await h.settle(timeout=120)
        h.assert_no_crash()
        assert h.conn is not None
        topology = h.conn.topology
        dlqs = [f"{topology.worker_queue(w)}.dlq" for w in ("registry", "tasks", "allocator")]
        dead = {s.name: s.messages for s in await queue_stats(h.conn, dlqs)}
    record(
        {
            **verdict.counts,
            "outage_s": OUTAGE_S,
            "dead_letters": sum(dead.values()),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert verdict.problems() == []
    assert verdict.ledger.accepted >= 200
    assert verdict.ledger.terminal == verdict.ledger.accepted
    assert sum(dead.values()) == 0, dead  # nothing parked for good because the store was away
