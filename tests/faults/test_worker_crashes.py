"""Cases 1 and 2 of issue 8: worker replicas die, under load, and nothing is lost or repeated.

1. A tasks or allocator replica SIGKILLed mid-handling, five times, each restarted.
2. A tasks replica that dies (os._exit) right after its append committed and
   before its ack (``RALLY_FAULT_EXIT_AFTER_APPEND``): the broker hands the
   delivery to another replica, which must find it already applied.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.fleet import worker_name
from tests.support.hand import scripted_agent
from tests.support.harness import AGENTS, Harness

# a fleet, a fault and a drain: more than the default 120 s when the machine is busy
pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(240)]


async def test_replicas_sigkilled_mid_handling_repeatedly_lose_nothing(
    fault_amqp_url: str,
    sqlite_url: str,
    harness: Callable[..., Harness],
    record: Callable[[dict[str, Any]], None],
) -> None:
    started = time.monotonic()
    async with harness(amqp_url=fault_amqp_url, store_url=sqlite_url) as h:
        await h.start(agents=AGENTS)
        stop = asyncio.Event()
        load = asyncio.create_task(h.workload.steady(stop, per_second=50, limit=300))
        rng = random.Random(8)
        killed = []
        for _ in range(5):
            await asyncio.sleep(1.0)
            victim = worker_name(rng.choice(("tasks", "allocator")), rng.randrange(3))
            h.fleet.kill(victim)
            killed.append(victim)
            await asyncio.sleep(0.2)
            h.fleet.restart(victim)
        stop.set()
        await load
        verdict = await h.settle(timeout=90)
        h.assert_no_crash()
    record({**verdict.counts, "killed": killed, "seconds": round(time.monotonic() - started, 1)})
    assert verdict.problems() == []
    assert verdict.ledger.accepted >= 200
    assert verdict.ledger.terminal == verdict.ledger.accepted


# the victim task manager handles: the submit (1), ReportTaskStarted (2), a first progress
# report (3), and dies after appending the second (4) — a report only its message id dedupes
EXIT_AFTER = 4


async def test_replica_dying_between_append_and_ack_applies_nothing_twice(
    fault_amqp_url: str,
    sqlite_url: str,
    harness: Callable[..., Harness],
    record: Callable[[dict[str, Any]], None],
) -> None:
    started = time.monotonic()
    async with harness(amqp_url=fault_amqp_url, store_url=sqlite_url) as h:
        await h.start(agents=AGENTS, workers=("registry", "allocator"))
        victim = h.fleet.start_worker(
            "tasks", 0, {"RALLY_FAULT_EXIT_AFTER_APPEND": str(EXIT_AFTER)}
        )
        await h.wait_ready()
        hand = await scripted_agent(h)
        try:
            task_id = await h.workload.submit_one(capability="manual")
            stream = f"task-{task_id}"
            assign = await asyncio.wait_for(hand.assigned.get(), 20)
            await hand.agent.report(assign, "started")
            await h.history.wait_for(stream, "TaskStarted")
            await hand.progress(assign, 0.25)
            await h.history.wait_for(stream, "TaskProgressed")
            await hand.progress(assign, 0.5)  # the victim's last delivery
            proc = h.fleet.procs[victim]
            h.fleet.expected_exits.add(proc.pid)
            exit_code = await asyncio.to_thread(proc.wait, 30)
            line = next(
                (x for x in h.fleet.log(victim).splitlines() if x.startswith("rally-fault:")), ""
            )
            message_id = line.split(" of ")[1].split(",")[0] if " of " in line else "?"
            # the survivors get the unacked delivery again, under load
            h.fleet.start_worker("tasks", 1)
            h.fleet.start_worker("tasks", 2)
            await h.workload.submit(150)
            await h.history.wait_ended(h.workload.accepted - {task_id}, 60)
            await hand.agent.report(assign, "succeeded", result={"by": "hand"})
            verdict = await h.settle(timeout=60)
        finally:
            await hand.close()
        h.assert_no_crash()
        applied = [e.type for e in h.history.events if e.metadata.get("message_id") == message_id]
        progressed = [e for e in h.history.stream(stream) if e.type == "TaskProgressed"]
    record(
        {
            **verdict.counts,
            "exit_code": exit_code,
            "effects_of_the_dying_message": len(applied),
            "progress_events": len(progressed),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert exit_code == 70, line
    assert applied == ["TaskProgressed"]  # it died after its append; the redelivery added none
    assert [e.data["progress"] for e in progressed] == [0.25, 0.5]
    assert verdict.problems() == []
    assert verdict.ledger.accepted == 151
    assert verdict.ledger.terminal == 151
