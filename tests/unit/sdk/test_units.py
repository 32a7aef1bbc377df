"""The SDK's pure parts, without a broker: admission, lease timing, outcomes, retry loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from broker.errors import PublishFailed
from contracts import AssignTask, Envelope, Heartbeat, TaskOutcome
from sdk.admission import admit
from sdk.delivery import ReliableSender
from sdk.errors import NonRetryableError, TaskError, TaskRefusedError, describe
from sdk.lease import renew_delay
from sdk.outcomes import OutcomeBook

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def assign(capability: str = "crawl", attempt: int = 1, task_id: UUID | None = None) -> AssignTask:
    return AssignTask(
        task_id=task_id or uuid4(),
        capability=capability,
        attempt=attempt,
        fencing_token=1,
        timeout_s=10,
    )


@pytest.mark.parametrize(
    ("capability", "attempt", "running", "draining", "verdict", "reason"),
    [
        ("crawl", 1, {}, False, "run", ""),
        ("crawl", 1, {"other": 1}, False, "reject", "agent is full (1/1 running)"),
        ("crawl", 1, {}, True, "reject", "agent is draining"),
        ("paint", 1, {}, False, "reject", "no handler for capability 'paint'"),
        ("crawl", 1, {"self": 1}, False, "duplicate", "attempt 1 already running"),
        ("crawl", 2, {"self": 1}, False, "replace", "attempt 2 supersedes 1"),
        ("crawl", 1, {"self": 2}, True, "duplicate", "attempt 2 already running"),
    ],
)
def test_admission(
    capability: str,
    attempt: int,
    running: dict[str, int],
    draining: bool,
    verdict: str,
    reason: str,
) -> None:
    me, other = uuid4(), uuid4()
    ids = {"self": me, "other": other}
    decision = admit(
        assign(capability, attempt, me),
        capabilities={"crawl"},
        capacity=1,
        running={ids[k]: v for k, v in running.items()},
        draining=draining,
    )
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_renew_delay_is_a_third_of_the_ttl_or_half_what_is_left() -> None:
    assert renew_delay(30, None, T0) == 10
    assert renew_delay(30, T0 + timedelta(seconds=12), T0) == 6
    assert renew_delay(30, T0 - timedelta(seconds=5), T0) == 0.05  # late: renew now


def test_describe_carries_the_retry_decision() -> None:
    assert describe(ValueError("x")) == {
        "error": "ValueError: x",
        "error_type": "ValueError",
        "retryable": True,
    }
    assert describe(NonRetryableError("bad", error_type="Bad")) == {
        "error": "bad",
        "error_type": "Bad",
        "retryable": False,
    }
    assert describe(TaskError("later"))["retryable"] is True


async def test_outcome_before_anyone_waits_and_duplicate_alias() -> None:
    book = OutcomeBook()
    early, mine, theirs = uuid4(), uuid4(), uuid4()
    submitted = book.future(early)  # made at submit, before the command leaves
    assert book.resolve(TaskOutcome(task_id=early, state="succeeded", attempt=1, result=1))
    assert submitted.result().result == 1
    assert book.future(early).result().result == 1
    waiting = book.future(mine)
    book.alias(mine, theirs)
    assert book.canonical(mine) == theirs
    book.resolve(TaskOutcome(task_id=theirs, state="dead", attempt=3, error="e"))
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert waiting.result().state == "dead"


class FlakyPublisher:
    """Fails the first ``failures`` publishes, then records what it was given."""

    sender = "agent-x"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[str] = []
        self.topology = type("T", (), {"commands": "ns.commands"})()

    async def publish(self, envelope: Envelope[Any], **_: Any) -> None:
        self.attempts.append(f"{envelope.payload.load}:{envelope.id}")
        if self.failures:
            self.failures -= 1
            raise PublishFailed("connection lost")


class NoSleep:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> datetime:
        return T0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_reliable_sender_retries_the_same_envelope_until_confirmed() -> None:
    publisher, clock = FlakyPublisher(failures=3), NoSleep()
    sender = ReliableSender(publisher, clock)  # type: ignore[arg-type]
    first = sender.deliver_soon(sender.wrap(Heartbeat(agent_id="agent-x", load=1)))
    second = sender.deliver_soon(sender.wrap(Heartbeat(agent_id="agent-x", load=0)))
    await sender.flush()
    assert first.done()
    assert second.done()
    a = publisher.attempts
    # first tries in the order sent; a failed one is retried with the same envelope (one
    # id) without holding back the report after it
    assert a[0][0] == "1"
    assert len(a) == 5  # 3 failures, 2 confirms
    ids: dict[str, set[str]] = {x.split(":", 1)[0]: set() for x in a}
    for x in a:
        ids[x.split(":", 1)[0]].add(x.split(":", 1)[1])
    assert all(len(v) == 1 for v in ids.values())
    assert clock.slept == [0.2, 0.4, 0.8]  # backs off, then the same envelope gets through
    assert sender.pending == 0


async def test_the_outcome_book_stays_bounded_and_keeps_what_is_pending() -> None:
    from sdk import outcomes

    book = OutcomeBook()
    pending = [uuid4() for _ in range(50)]
    for task_id in pending:  # waited for, never answered: must never be dropped
        book.future(task_id)
    for _ in range(3 * outcomes._KEEP):
        task_id = uuid4()
        book.future(task_id)
        book.resolve(TaskOutcome(task_id=task_id, state="succeeded", attempt=1))
        assert len(book._futures) <= outcomes._KEEP + outcomes._SLACK + 1
    assert all(not book.future(t).done() for t in pending)
    assert all(t in book._futures for t in pending)
    newest = next(reversed(book._futures))
    assert book.future(newest).done()  # the latest settled outcomes are still there


def test_an_outcome_for_a_task_never_submitted_here_is_not_taken() -> None:
    book = OutcomeBook()
    stranger = uuid4()
    assert not book.resolve(TaskOutcome(task_id=stranger, state="succeeded", attempt=1))
    assert not book.knows(stranger)


async def test_a_refusal_fails_the_handle_and_its_aliases() -> None:
    book = OutcomeBook()
    mine, theirs = uuid4(), uuid4()
    waiting = book.future(mine)
    book.alias(mine, theirs)
    assert book.fail(theirs, TaskRefusedError(theirs, "conflict", "key taken"))
    await asyncio.sleep(0)
    with pytest.raises(TaskRefusedError, match="conflict"):
        waiting.result()
