"""The agent against a real RabbitMQ, with the observer standing in for the workers."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest

from contracts import AssignTask, StopTask
from sdk import Agent, NonRetryableError, Task
from tests.broker.sdk.conftest import MakeAgent, Notify
from tests.support.standin import Observer, eventually, task_of

pytestmark = pytest.mark.broker


def assignment(
    capability: str = "echo", *, attempt: int = 1, token: int = 1, **kw: Any
) -> AssignTask:
    return AssignTask(
        task_id=uuid4(),
        capability=capability,
        payload=kw.pop("payload", {"n": 1}),
        attempt=attempt,
        fencing_token=token,
        timeout_s=kw.pop("timeout_s", 30.0),
    )


def echo_agent(make_agent: MakeAgent, **kwargs: Any) -> Agent:
    agent = make_agent(**kwargs)

    @agent.capability("echo")
    async def echo(task: Task) -> Any:
        await task.progress(0.5, "half")
        return {"echo": task.payload, "attempt": task.attempt}

    return agent


async def test_registers_then_heartbeats(make_agent: MakeAgent, observer: Observer) -> None:
    agent = echo_agent(make_agent, capacity=3, labels={"zone": "a"}, software_version="1.2")
    await agent.start()
    (reg,) = await observer.wait_for("RegisterAgent")
    assert reg.payload.agent_id == "agent-1"
    assert reg.payload.capabilities == ("echo",)
    assert (reg.payload.capacity, reg.payload.labels) == (3, {"zone": "a"})
    assert reg.payload.heartbeat_interval_s == 0.2
    beats = await observer.wait_for("Heartbeat", count=2)
    assert all(b.payload.agent_id == "agent-1" and b.payload.load == 0 for b in beats)
    assert observer.seen[0].type == "RegisterAgent"  # registered before the first beat


async def test_assignment_reports_started_progress_succeeded(
    make_agent: MakeAgent, observer: Observer, notify: Notify
) -> None:
    await echo_agent(make_agent).start()
    assign = assignment(attempt=2, token=7, payload={"url": "x"})
    sent = await notify("agent-1", assign)
    done = await observer.wait_for("ReportTaskSucceeded", task_of(assign.task_id))
    reports = [e for e in observer.seen if task_of(assign.task_id)(e)]
    assert [e.type for e in reports] == [
        "ReportTaskStarted",
        "ReportTaskProgress",
        "ReportTaskSucceeded",
    ]
    for report in reports:
        assert report.payload.agent_id == "agent-1"
        assert (report.payload.attempt, report.payload.fencing_token) == (2, 7)
        assert report.correlation_id == sent.correlation_id
        assert report.causation_id == sent.id
    assert reports[1].payload.progress == 0.5
    assert done[0].payload.result == {"echo": {"url": "x"}, "attempt": 2}


async def test_failures_are_reported_with_their_retry_decision(
    make_agent: MakeAgent, observer: Observer, notify: Notify
) -> None:
    agent = make_agent()

    @agent.capability("flaky")
    async def flaky(task: Task) -> None:
        raise ValueError("boom")

    @agent.capability("doomed")
    async def doomed(task: Task) -> None:
        raise NonRetryableError("bad input", error_type="BadInput")

    await agent.start()
    first, second = assignment("flaky", token=3), assignment("doomed")
    await notify("agent-1", first)
    await notify("agent-1", second)
    (f1,) = await observer.wait_for("ReportTaskFailed", task_of(first.task_id))
    (f2,) = await observer.wait_for("ReportTaskFailed", task_of(second.task_id))
    assert (f1.payload.error, f1.payload.error_type) == ("ValueError: boom", "ValueError")
    assert f1.payload.retryable is True
    assert f1.payload.fencing_token == 3
    assert (f2.payload.error, f2.payload.error_type) == ("bad input", "BadInput")
    assert f2.payload.retryable is False
    assert not observer.of("ReportTaskSucceeded")


async def test_capacity_two_runs_two_and_rejects_the_rest(
    make_agent: MakeAgent, observer: Observer, notify: Notify
) -> None:
    agent = make_agent(capacity=2)
    release = asyncio.Event()
    now = peak = 0

    @agent.capability("slow")
    async def slow(task: Task) -> int:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await release.wait()
        now -= 1
        return task.attempt

    await agent.start()
    tasks = [assignment("slow") for _ in range(5)]
    for a in tasks:
        await notify("agent-1", a)
    started = await observer.wait_for("ReportTaskStarted", count=2)
    rejected = await observer.wait_for("RejectAssignment", count=3)
    assert all("full" in r.payload.reason for r in rejected)
    assert {e.payload.task_id for e in started + rejected} == {a.task_id for a in tasks}
    assert agent.load == 2
    release.set()
    await observer.wait_for("ReportTaskSucceeded", count=2)
    assert peak == 2
    assert len(observer.of("ReportTaskStarted")) == 2


async def test_stop_task_cancels_the_attempt_without_a_report(
    make_agent: MakeAgent, observer: Observer, notify: Notify
) -> None:
    agent = make_agent()
    cancelled = asyncio.Event()

    @agent.capability("forever")
    async def forever(task: Task) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await agent.start()
    a = assignment("forever", attempt=3)
    await notify("agent-1", a)
    await observer.wait_for("ReportTaskStarted", task_of(a.task_id))
    await notify("agent-1", StopTask(task_id=a.task_id, attempt=2, reason="stale attempt"))
    await asyncio.sleep(0.3)
    assert not cancelled.is_set()  # a StopTask for another attempt is ignored
    await notify("agent-1", StopTask(task_id=a.task_id, attempt=3, reason="cancelled"))
    await asyncio.wait_for(cancelled.wait(), 5)
    await eventually(lambda: agent.load == 0)
    await asyncio.sleep(0.3)  # a final report would have arrived by now
    finals = [e.type for e in observer.seen if task_of(a.task_id)(e)]
    assert finals == ["ReportTaskStarted"]


async def test_stop_drains_finishes_running_rejects_new_then_deregisters(
    make_agent: MakeAgent, observer: Observer, notify: Notify
) -> None:
    agent = make_agent()
    release = asyncio.Event()

    @agent.capability("slow")
    async def slow(task: Task) -> str:
        await release.wait()
        return "done"

    await agent.start()
    running = assignment("slow")
    await notify("agent-1", running)
    await observer.wait_for("ReportTaskStarted", task_of(running.task_id))
    stopping = agent.stop()
    await observer.wait_for("DeregisterAgent", lambda e: e.payload.drain)
    late = assignment("slow")
    await notify("agent-1", late)
    (rejected,) = await observer.wait_for("RejectAssignment", task_of(late.task_id))
    assert rejected.payload.reason == "agent is draining"
    assert not stopping.done()  # still waiting for the running task
    release.set()
    await asyncio.wait_for(stopping, 10)
    await asyncio.sleep(0.5)  # > 2 heartbeat intervals: none may follow the goodbye
    assert observer.seen[-1].type == "DeregisterAgent"
    types = [e.type for e in observer.seen if e.type != "Heartbeat"]
    succeeded = types.index("ReportTaskSucceeded")
    assert types[-1] == "DeregisterAgent"
    assert observer.seen[-1].payload.drain is False
    assert succeeded < len(types) - 1
    assert agent.conn is not None
    assert agent.conn.connection.is_closed
