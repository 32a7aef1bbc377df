"""Case 6 of issue 8: an agent frozen (SIGSTOP) past its heartbeat window, then resumed.

While it is frozen the registry counts it lost and its tasks are placed on
other agents, each with a new fencing token. When it resumes, its handlers
finish and it reports success for the attempts it held: every such late
report must be refused by the token and leave no trace in the history; each
task succeeds once, by its new holder.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.harness import AGENTS, Harness
from tests.support.standin import Observer
from workers.demo.scenario import AgentPlan

# a fleet, a fault and a drain: more than the default 120 s when the machine is busy
pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(240)]

FROZEN = "sleepy"
HEARTBEAT_S = 0.5  # lost after 3 × 0.5 s of silence
FREEZE_S = 4.0


async def test_frozen_agent_loses_its_work_and_its_late_results_are_fenced_off(
    fault_amqp_url: str,
    sqlite_url: str,
    harness: Callable[..., Harness],
    record: Callable[[dict[str, Any]], None],
) -> None:
    started = time.monotonic()
    async with harness(amqp_url=fault_amqp_url, store_url=sqlite_url) as h:
        assert h.conn is not None
        observer = await Observer(h.conn).start()  # every command, as sent
        await h.start(
            agents={"a": AGENTS["a"], "sleepy": [AgentPlan(FROZEN, ("work",), 4)]},
            heartbeat_s=HEARTBEAT_S,
        )
        h.workload.payload = {"ms": 1000}  # long enough to be in hand when it freezes
        await h.workload.submit(40)
        held = await wait_held(h, count=4)
        h.fleet.freeze("agents-sleepy")
        frozen_at = time.monotonic()
        await h.history.wait_for(f"agent-{FROZEN}", "AgentLost", timeout=15)
        await asyncio.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
        h.fleet.thaw("agents-sleepy")
        late = await observer.wait_for(
            "ReportTaskSucceeded",
            lambda e: e.sender == FROZEN and str(e.payload.task_id) in held,
            count=1,
            timeout=20,
        )
        verdict = await h.settle(timeout=60)
        await asyncio.sleep(0.5)
        late = observer.of(
            "ReportTaskSucceeded", lambda e: e.sender == FROZEN and str(e.payload.task_id) in held
        )
        history = await h.history.refresh()
        h.assert_no_crash()
    late_ids = {str(e.id) for e in late}
    traces = [e for e in history if e.metadata.get("message_id") in late_ids]
    winners = {str(e.data["task_id"]): e.data for e in history if e.type == "TaskSucceeded"}
    record(
        {
            **verdict.counts,
            "held_when_frozen": len(held),
            "late_reports": len(late),
            "late_report_effects": len(traces),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert traces == []  # the fencing token refused every late report
    for task_id, (attempt, token) in held.items():
        won = winners[task_id]
        assert won["agent_id"] != FROZEN, f"task {task_id} succeeded by the frozen agent"
        assert won["attempt"] > attempt  # placed elsewhere, as a new attempt
        assigned = [e for e in history if e.type == "TaskAssigned" and e.data["task_id"] == task_id]
        assert assigned[-1].data["fencing_token"] != token
    assert verdict.problems() == []
    assert verdict.ledger.terminal == verdict.ledger.accepted == 40
    assert verdict.report.reassigned >= len(held)


async def wait_held(h: Harness, count: int, timeout: float = 20.0) -> dict[str, tuple[int, int]]:
    """Tasks the frozen-to-be agent has started and not finished: id → (attempt, token)."""
    deadline = time.monotonic() + timeout
    while True:
        await h.history.refresh()
        tokens = {
            str(e.data["task_id"]): (int(e.data["attempt"]), int(e.data["fencing_token"]))
            for e in h.history.of_type("TaskAssigned")
            if e.data["agent_id"] == FROZEN
        }
        running = {
            str(e.data["task_id"])
            for e in h.history.of_type("TaskStarted")
            if e.data["agent_id"] == FROZEN
        }
        done = {str(e.data["task_id"]) for e in h.history.of_type("TaskSucceeded")}
        held = {t: tokens[t] for t in running - done if t in tokens}
        if len(held) >= count or time.monotonic() > deadline:
            assert held, "the agent never started anything"
            return held
        await asyncio.sleep(0.05)
