"""The ledger side of the history check: accepted against recorded, and effects applied twice.

Histories are real contract events on their owners' streams (tests/support/recorded.py).
"""

from __future__ import annotations

from uuid import UUID, uuid4

from contracts import AgentLost, TaskProgressed, TaskReady
from tests.support.recorded import Recorder, history, submitted, succeeded
from workers.history_check import check_history, duplicate_effects, reconcile
from workers.registry.state import stream_of as agent_stream
from workers.tasks.state import stream_of

A, B, MAYBE, X = uuid4(), uuid4(), uuid4(), uuid4()


def test_accepted_and_ended_is_clean() -> None:
    ledger = reconcile(check_history(history(submitted(A), succeeded(A))), [str(A)])
    assert ledger.ok
    assert ledger.counts() == {
        "accepted": 1,
        "terminal": 1,
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
    }


def test_accepted_but_never_recorded_or_never_ended_is_lost() -> None:
    ledger = reconcile(check_history(history(submitted(B))), [str(A), str(B)])
    assert sorted(ledger.lost) == sorted(
        [f"task {A} accepted but never recorded", f"task {B} accepted but never ended"]
    )
    assert ledger.terminal == 0


def test_unconfirmed_may_be_recorded_but_a_stranger_is_unexpected() -> None:
    records = history(submitted(MAYBE), succeeded(MAYBE), submitted(X), succeeded(X))
    ledger = reconcile(check_history(records), [], attempted=[str(MAYBE)])
    assert ledger.unexpected == [f"task {X} recorded but never sent"]


def test_a_task_ending_twice_is_a_duplicate() -> None:
    records = history(submitted(A), succeeded(A), succeeded(A))
    ledger = reconcile(check_history(records), [str(A)])
    assert ledger.duplicated == [f"task {A} ended twice (again with TaskSucceeded)"]
    assert not ledger.ok


def progressed(task: UUID, n: int) -> TaskProgressed:
    return TaskProgressed(task_id=task, agent_id="x", attempt=1, progress=n / 10)


def test_one_message_applied_twice_and_version_holes_are_found() -> None:
    recorder = Recorder()
    a, b = stream_of(A), stream_of(B)
    recorder.record((a, progressed(A, 1)), message_id="m1")
    recorder.record((a, progressed(A, 2)), message_id="m1")  # the same report, again
    recorder.record((a, progressed(A, 3)), message_id="m2")
    recorder.record(submitted(B), message_id="m1")  # one message, two streams: fine
    recorder.record((b, TaskReady(task_id=B)), version=3)  # version 2 is missing
    assert duplicate_effects(recorder.records) == [
        f"{a}: message m1 applied 2 times (TaskProgressed)",
        f"{b}: versions not contiguous from 1: [1, 3]",
    ]


def test_events_without_a_message_id_are_not_duplicates() -> None:
    stream = agent_stream("x")
    gone = (stream, AgentLost(agent_id="x", silent_for_s=3))
    assert duplicate_effects(history(gone, gone)) == []
