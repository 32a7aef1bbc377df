"""A task's life over the real broker and store: submit, place, run, finish, tell the submitter."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import SubmitTask, TaskAccepted, TaskOutcome
from tests.support.agent import Inbox
from tests.support.history import History

pytestmark = pytest.mark.broker


async def test_submit_place_run_succeed_and_tell_the_submitter(
    history: History, agents: Any, client: Inbox
) -> None:
    await agents("a1", capabilities=("crawl",), capacity=2)
    submit = SubmitTask(capability="crawl", payload={"url": "x"}, reply_to="client")
    await client.publisher.send(submit)  # type: ignore[attr-defined]

    outcome = await client.wait_for(lambda box: box.of(TaskOutcome))
    assert outcome[0].state == "succeeded"
    assert outcome[0].result == {"echo": {"url": "x"}}
    assert client.of(TaskAccepted) == []  # only a duplicate hears TaskAccepted
    types = await history.types(f"task-{submit.task_id}")
    assert types == ["TaskSubmitted", "TaskAssigned", "TaskStarted", "TaskSucceeded"]
    assigned = (await history.task(submit.task_id))[1]
    assert assigned.agent_id == "a1"  # type: ignore[attr-defined]
    assert assigned.fencing_token == 2  # type: ignore[attr-defined]
    assert assigned.reason == "least loaded of 1 agent with 'crawl' (0/2 busy)"  # type: ignore[attr-defined]
