"""The task manager over the real broker and store: keys, dependencies, retries, time-outs,
cancellation, result limits and fencing."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest

from contracts import (
    AssignTask,
    Backoff,
    CancelTask,
    ReportTaskSucceeded,
    StopTask,
    SubmitTask,
    TaskAccepted,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskOutcome,
    TaskSucceeded,
)
from tests.support.agent import Inbox, ScriptedAgent
from tests.support.history import History

pytestmark = pytest.mark.broker

FAST = Backoff(initial_s=0.1, factor=2, max_s=1)


async def submit(client: Inbox, **kw: Any) -> SubmitTask:
    cmd = SubmitTask(reply_to="client", backoff=FAST, **kw)
    await client.publisher.send(cmd)  # type: ignore[attr-defined]
    return cmd


def outcome_of(client: Inbox, cmd: SubmitTask) -> Any:
    return next((o for o in client.of(TaskOutcome) if o.task_id == cmd.task_id), None)


async def test_a_repeated_idempotency_key_returns_the_same_task(
    history: History, agents: Any, client: Inbox
) -> None:
    first = await submit(client, capability="none-yet", idempotency_key="order-7")
    await history.wait_task(first.task_id, "TaskSubmitted")
    second = await submit(client, capability="none-yet", idempotency_key="order-7")
    accepted = await client.wait_for(
        lambda box: [a for a in box.of(TaskAccepted) if a.task_id == second.task_id]
    )
    assert accepted[0].duplicate_of == first.task_id
    assert await history.task(second.task_id) == []
    submitted = [r for r in await history.all() if r.type == "TaskSubmitted"]
    assert len(submitted) == 1


async def test_dependency_chain_runs_in_order(history: History, agents: Any, client: Inbox) -> None:
    await agents("w", capabilities=("c",), capacity=3)
    a = await submit(client, capability="c")
    b = await submit(client, capability="c", depends_on=(a.task_id,))
    c = await submit(client, capability="c", depends_on=(b.task_id,))
    await client.wait_for(lambda box: outcome_of(box, c))
    records = await history.all()
    done = [load.task_id for load in _events(records, TaskSucceeded)]
    assert done == [a.task_id, b.task_id, c.task_id]


async def test_a_dependent_racing_ahead_of_its_dependency_waits_for_it(
    history: History, agents: Any, client: Inbox
) -> None:
    await agents("w", capabilities=("c",), capacity=3)
    a = SubmitTask(capability="c", reply_to="client", backoff=FAST)
    b = await submit(client, capability="c", depends_on=(a.task_id,))  # sent first
    await client.publisher.send(a)  # type: ignore[attr-defined]
    await client.wait_for(lambda box: outcome_of(box, b), timeout=30)
    assert (outcome_of(client, a).state, outcome_of(client, b).state) == ("succeeded",) * 2


async def test_unknown_dependencies_cancel_the_task_and_write_no_streams(
    history: History, client: Inbox
) -> None:
    missing = [uuid4() for _ in range(50)]
    cmd = await submit(client, capability="c", depends_on=tuple(missing))
    outcome = await client.wait_for(lambda box: outcome_of(box, cmd), timeout=30)
    assert outcome.state == "cancelled"
    assert outcome.error == f"depends on unknown task {missing[0]}"
    assert {r.stream for r in await history.all()} == {f"task-{cmd.task_id}"}


async def test_failed_dependency_cancels_dependents_with_the_reason(
    history: History, agents: Any, client: Inbox
) -> None:
    async def fail(agent: ScriptedAgent, task: AssignTask) -> None:
        await agent.report(task, "failed", error="disk full", retryable=False)

    await agents("w", capabilities=("c",), work=fail)
    a = await submit(client, capability="c")
    b = await submit(client, capability="c", depends_on=(a.task_id,))
    c = await submit(client, capability="c", depends_on=(b.task_id,))
    await client.wait_for(lambda box: outcome_of(box, c))
    assert outcome_of(client, a).state == "dead"
    cancelled_b = await history.wait_task(b.task_id, "TaskCancelled")
    assert isinstance(cancelled_b, TaskCancelled)
    assert cancelled_b.reason == f"dependency {a.task_id} ended dead: disk full"
    assert outcome_of(client, c).state == "cancelled"
    assert str(b.task_id) in outcome_of(client, c).error


async def test_failures_retry_with_backoff_then_die(
    history: History, agents: Any, client: Inbox
) -> None:
    async def poison(agent: ScriptedAgent, task: AssignTask) -> None:
        await agent.report(task, "started")
        await agent.report(task, "failed", error=f"boom {task.attempt}")

    await agents("w", capabilities=("c",), work=poison)
    cmd = await submit(client, capability="c", max_attempts=3)
    outcome = await client.wait_for(lambda box: outcome_of(box, cmd))
    assert outcome.state == "dead"
    assert outcome.error == "boom 3"
    types = await history.types(f"task-{cmd.task_id}")
    assert types.count("TaskFailed") == 3
    assert types.count("TaskRetryScheduled") == 2
    assert types[-1] == "TaskDead"
    delays = [e.delay_s for e in await history.task(cmd.task_id) if hasattr(e, "delay_s")]
    assert delays == [0.1, 0.2]


async def test_a_running_task_past_its_timeout_fails_and_its_agent_is_told_to_stop(
    history: History, agents: Any, client: Inbox
) -> None:
    async def hang(agent: ScriptedAgent, task: AssignTask) -> None:
        await agent.report(task, "started")

    agent = await agents("w", capabilities=("c",), work=hang)
    cmd = await submit(client, capability="c", timeout_s=0.3, max_attempts=1)
    outcome = await client.wait_for(lambda box: outcome_of(box, cmd))
    assert outcome.state == "dead"
    failed = await history.wait_task(cmd.task_id, "TaskFailed")
    assert isinstance(failed, TaskFailed)
    assert failed.error == "timed out after 0.3s"
    stops = await agent.inbox.wait_for(lambda box: box.of(StopTask))
    assert stops[0].task_id == cmd.task_id


async def test_cancel_pending_and_running(history: History, agents: Any, client: Inbox) -> None:
    pending = await submit(client, capability="nobody-has-it")
    await history.wait_task(pending.task_id, "TaskSubmitted")
    await client.publisher.send(CancelTask(task_id=pending.task_id, reason="changed my mind"))  # type: ignore[attr-defined]
    assert (await client.wait_for(lambda box: outcome_of(box, pending))).state == "cancelled"

    async def hang(agent: ScriptedAgent, task: AssignTask) -> None:
        await agent.report(task, "started")

    agent = await agents("w", capabilities=("c",), work=hang)
    running = await submit(client, capability="c")
    await history.wait_task(running.task_id, "TaskStarted")
    await client.publisher.send(CancelTask(task_id=running.task_id))  # type: ignore[attr-defined]
    stop = await agent.inbox.wait_for(lambda box: box.of(StopTask))
    assert stop[0].task_id == running.task_id
    cancelled = await history.wait_task(running.task_id, "TaskCancelled")
    assert cancelled.agent_id == "w"  # type: ignore[attr-defined]


async def test_a_result_over_the_limit_is_refused(
    history: History, agents: Any, client: Inbox
) -> None:
    async def big(agent: ScriptedAgent, task: AssignTask) -> None:
        await agent.report(task, "started")
        await agent.report(task, "succeeded", result="x" * 5000)

    await agents("w", capabilities=("c",), work=big)
    cmd = await submit(client, capability="c")
    outcome = await client.wait_for(lambda box: outcome_of(box, cmd))
    assert outcome.state == "dead"
    assert outcome.error == "result too large: 5002 bytes > 2000"


async def test_a_stale_report_has_no_effect(history: History, agents: Any, client: Inbox) -> None:
    held: list[AssignTask] = []

    async def hold(agent: ScriptedAgent, task: AssignTask) -> None:
        held.append(task)
        await agent.report(task, "started")

    agent = await agents("w", capabilities=("c",), work=hold)
    cmd = await submit(client, capability="c")
    await history.wait_task(cmd.task_id, "TaskStarted")
    (task,) = held
    wrong = ReportTaskSucceeded(
        task_id=task.task_id,
        agent_id="w",
        attempt=task.attempt,
        fencing_token=task.fencing_token + 5,
    )
    await agent.send(wrong)
    await asyncio.sleep(0.3)
    assert "TaskSucceeded" not in await history.types(f"task-{cmd.task_id}")
    await agent.report(task, "succeeded", result=1)
    assert (await client.wait_for(lambda box: outcome_of(box, cmd))).state == "succeeded"


def _events(records: list[Any], cls: type) -> list[Any]:
    from workers.runtime.messages import load_event

    return [e for e in (load_event(r) for r in records) if isinstance(e, cls)]


_ = TaskDead
