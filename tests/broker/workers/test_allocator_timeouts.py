"""Time-outs the allocator notices by its own clock, over the real broker and store."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import AssignTask, SubmitTask, TaskDead, TaskFailed, TaskOutcome
from tests.support.agent import Inbox, ScriptedAgent
from tests.support.history import History

pytestmark = pytest.mark.broker


async def test_an_assignment_never_started_fails_without_a_watchdog_timer(
    history: History, agents: Any, client: Inbox
) -> None:
    async def ignore(agent: ScriptedAgent, task: AssignTask) -> None:
        return None  # takes it and never reports

    await agents("mute", capabilities=("c",), work=ignore)
    cmd = SubmitTask(capability="c", timeout_s=0.5, max_attempts=1, reply_to="client")
    await client.publisher.send(cmd)  # type: ignore[attr-defined]
    failed = await history.wait_task(cmd.task_id, "TaskFailed")
    assert isinstance(failed, TaskFailed)
    assert (failed.error_type, failed.error) == ("Timeout", "not started within 0.5s")
    await history.wait_task(cmd.task_id, "TaskDead")
    outcome = await client.wait_for(lambda box: box.of(TaskOutcome))
    assert outcome[0].state == "dead"


async def test_a_task_pending_past_its_timeout_ends_dead_with_why_it_waited(
    history: History, client: Inbox
) -> None:
    cmd = SubmitTask(capability="nobody-has-it", pending_timeout_s=0.5, reply_to="client")
    await client.publisher.send(cmd)  # type: ignore[attr-defined]
    dead = await history.wait_task(cmd.task_id, "TaskDead")
    assert isinstance(dead, TaskDead)
    assert dead.error == "pending for more than 0.5s: no live agent with 'nobody-has-it'"
