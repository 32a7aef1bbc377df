"""The client against a real RabbitMQ: submit, outcomes (early ones too), cancel, time-outs."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from contracts import Backoff, TaskAccepted, TaskOutcome
from sdk import Client, TaskCancelledError, TaskFailedError
from tests.broker.sdk.conftest import Notify
from tests.support.standin import Observer, eventually, task_of

pytestmark = pytest.mark.broker


async def test_submit_sends_every_option_and_names_its_inbox(
    client: Client, observer: Observer
) -> None:
    dep = uuid4()
    handle = await client.submit(
        "crawl",
        {"url": "https://example.com"},
        priority=5,
        idempotency_key="k-1",
        timeout_s=12.5,
        max_attempts=4,
        backoff={"initial_s": 0.5, "factor": 3.0},
        depends_on=[dep],
        resources=["gpu"],
    )
    (sent,) = await observer.wait_for("SubmitTask", task_of(handle.task_id))
    cmd = sent.payload
    assert cmd.reply_to == "client-test"
    assert cmd.capability == "crawl"
    assert cmd.payload == {"url": "https://example.com"}
    assert (cmd.priority, cmd.idempotency_key, cmd.timeout_s, cmd.max_attempts) == (
        5,
        "k-1",
        12.5,
        4,
    )
    assert cmd.backoff == Backoff(initial_s=0.5, factor=3.0)
    assert (cmd.depends_on, cmd.resources) == ((dep,), ("gpu",))
    assert sent.sender == "client-test"


async def test_outcome_that_arrives_before_result_is_awaited_is_kept(
    client: Client, observer: Observer, notify: Notify
) -> None:
    handle = await client.submit("crawl", {"url": "x"})
    await observer.wait_for("SubmitTask", task_of(handle.task_id))
    outcome = TaskOutcome(task_id=handle.task_id, state="succeeded", attempt=1, result={"pages": 3})
    await notify("client-test", outcome)
    await eventually(handle.done)  # the outcome is in before anyone asks for it
    assert await handle.result(timeout=5) == {"pages": 3}
    assert await handle.result(timeout=5) == {"pages": 3}  # and it can be read again


async def test_chained_result_waits_for_the_outcome(
    client: Client, observer: Observer, notify: Notify
) -> None:
    async def task_manager() -> None:
        (sent,) = await observer.wait_for("SubmitTask")
        await notify(
            "client-test",
            TaskOutcome(task_id=sent.payload.task_id, state="succeeded", attempt=2, result=[1, 2]),
        )

    answering = asyncio.create_task(task_manager())
    assert await client.submit("sum", [1, 2]).result(timeout=10) == [1, 2]
    await answering


async def test_dead_and_cancelled_outcomes_raise_with_the_error(
    client: Client, observer: Observer, notify: Notify
) -> None:
    dead = await client.submit("poison")
    cancelled = await client.submit("slow")
    await notify(
        "client-test",
        TaskOutcome(task_id=dead.task_id, state="dead", attempt=3, error="ValueError: always"),
    )
    await notify(
        "client-test",
        TaskOutcome(
            task_id=cancelled.task_id, state="cancelled", attempt=1, error="changed my mind"
        ),
    )
    with pytest.raises(TaskFailedError) as failed:
        await dead.result(timeout=5)
    assert (failed.value.error, failed.value.attempt) == ("ValueError: always", 3)
    with pytest.raises(TaskCancelledError, match="changed my mind"):
        await cancelled.result(timeout=5)


async def test_cancel_sends_cancel_task(client: Client, observer: Observer) -> None:
    handle = await client.submit("slow")
    await handle.cancel("no longer needed")
    (sent,) = await observer.wait_for("CancelTask")
    assert sent.payload.task_id == handle.task_id
    assert sent.payload.reason == "no longer needed"


async def test_result_times_out_and_can_be_awaited_again(
    client: Client, observer: Observer, notify: Notify
) -> None:
    handle = await client.submit("slow")
    with pytest.raises(TimeoutError):
        await handle.result(timeout=0.2)
    await notify(
        "client-test",
        TaskOutcome(task_id=handle.task_id, state="succeeded", attempt=1, result="late"),
    )
    assert await handle.result(timeout=5) == "late"


async def test_outcomes_reach_the_right_handle_among_many(
    client: Client, observer: Observer, notify: Notify
) -> None:
    handles = [await client.submit("n", i) for i in range(5)]
    for i, h in reversed(list(enumerate(handles))):
        await notify(
            "client-test",
            TaskOutcome(task_id=h.task_id, state="succeeded", attempt=1, result=i * 10),
        )
    assert [await h.result(timeout=5) for h in handles] == [0, 10, 20, 30, 40]


async def test_duplicate_submission_follows_the_existing_task(
    client: Client, observer: Observer, notify: Notify
) -> None:
    existing = uuid4()
    handle = await client.submit("crawl", idempotency_key="same-key")
    submitted = handle.task_id
    await notify("client-test", TaskAccepted(task_id=submitted, duplicate_of=existing))
    await eventually(lambda: handle.task_id == existing)
    await notify(
        "client-test", TaskOutcome(task_id=existing, state="succeeded", attempt=1, result="theirs")
    )
    assert await handle.result(timeout=5) == "theirs"
    assert (await client.submit("other")).task_id != submitted  # plain ones are unaffected
