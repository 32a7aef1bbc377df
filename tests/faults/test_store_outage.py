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
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import contracts as c
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.inspect import queue_stats
from broker.publisher import Publisher
from broker.router import Incoming, Router
from tests.support.amqp import depth, eventually
from tests.support.harness import AGENTS, Harness
from tests.support.services import PrivatePostgres
from workers.runtime.dependencies import StoreDown

# a fleet, a fault and a drain: more than the default 120 s when the machine is busy
pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(240)]

OUTAGE_S = 4.0  # far past the ~1.5 s in which failing deliveries used to run out of attempts


@pytest.mark.postgres
async def test_store_down_for_a_while_delays_work_but_loses_none(
    fault_amqp_url: str,
    private_pg: PrivatePostgres,
    harness: Callable[..., Harness],
    record: Callable[[dict[str, Any]], None],
) -> None:
    started = time.monotonic()
    store_url = f"{private_pg.url}?schema=faults_{uuid.uuid4().hex[:8]}"
    async with harness(amqp_url=fault_amqp_url, store_url=store_url) as h:
        await h.start(agents=AGENTS)
        stop = asyncio.Event()
        load = asyncio.create_task(h.workload.steady(stop, per_second=30, limit=400))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(private_pg.halt)
        try:
            await asyncio.sleep(OUTAGE_S)
        finally:
            await asyncio.to_thread(private_pg.resume)
        await asyncio.sleep(1.5)
        stop.set()
        await load
        verdict = await h.settle(timeout=90)
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
    assert verdict.ledger.accepted >= 150
    assert verdict.ledger.terminal == verdict.ledger.accepted
    assert sum(dead.values()) == 0, dead  # nothing parked for good because the store was away


async def test_a_delivery_is_held_while_its_store_is_down_and_handed_back_on_stop(
    fault_broker: BrokerConnection,
) -> None:
    """The consumer side of the above: no attempt spent, no dead letter, nothing acked early."""
    broker = fault_broker
    publisher = await Publisher(broker, sender="test").start()
    spec = broker.topology.work_queue("registry")
    calls: list[int] = []
    down = asyncio.Event()
    down.set()

    async def flaky(msg: Incoming[c.RegisterAgent]) -> None:
        calls.append(msg.attempt)
        if down.is_set() and len(calls) <= 6:  # twice the consumer's max_attempts (3)
            # what a service's store raises when the database is down (the runner's boundary)
            raise StoreDown("postgres: connection refused")

    first = await Consumer(
        broker, spec, _router(flaky), publisher, worker="registry", replica="0"
    ).start()
    await publisher.send(c.RegisterAgent(agent_id="held", capabilities=("x",), capacity=1))
    await eventually(lambda: len(calls) == 7, timeout=20)
    assert calls == [1] * 7  # the same delivery every time: never parked, never counted
    assert first.handled == 1
    assert await depth(broker, spec.dlq) == 0

    # stopping while the store is still down: the delivery goes back to the broker unacked
    calls.clear()
    down.set()
    await publisher.send(c.RegisterAgent(agent_id="handed", capabilities=("x",), capacity=1))
    await eventually(lambda: len(calls) >= 1, timeout=10)
    await first.stop(timeout=10)
    assert first.handled == 1
    got: list[Incoming[c.RegisterAgent]] = []

    async def healthy(msg: Incoming[c.RegisterAgent]) -> None:
        got.append(msg)

    second = await Consumer(
        broker, spec, _router(healthy), publisher, worker="registry", replica="1"
    ).start()
    try:
        await eventually(lambda: len(got) == 1, timeout=10)
        assert got[0].payload.agent_id == "handed"
        assert got[0].redelivered
        assert got[0].attempt == 1
    finally:
        await second.stop(timeout=5)
    assert await depth(broker, spec.dlq) == 0


def _router(handler: Callable[[Incoming[c.RegisterAgent]], Awaitable[None]]) -> Router:
    router = Router()
    router.add(c.RegisterAgent, handler)
    return router
