"""The task manager's answer to QueryTask, without I/O: who may read a task, and what they see."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from broker.router import Incoming
from contracts import Envelope, QueryTask, TaskSubmitted, TaskSucceeded
from workers.store.base import RecordedEvent
from workers.tasks.queries import may_read, reply_inbox, smaller, view_of
from workers.tasks.state import fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def asked(
    principal: str | None, *, service: bool = False, sender: str = "c-1"
) -> Incoming[QueryTask]:
    envelope = Envelope.wrap(QueryTask(task_id=uuid4()), sender=sender)
    return Incoming(envelope=envelope, user_id=principal, principal=principal, service=service)


def record(version: int, event: TaskSubmitted | TaskSucceeded) -> RecordedEvent:
    return RecordedEvent(
        position=version,
        stream=f"task-{event.task_id}",
        version=version,
        id=uuid4(),
        type=event.type_name(),
        schema_version=1,
        data=event.model_dump(mode="json"),
        metadata={},
        recorded_at=T0,
    )


def submitted(owner: str | None) -> TaskSubmitted:
    return TaskSubmitted(
        submitted_at=datetime.now(UTC), task_id=uuid4(), capability="crawl", ready=True, owner=owner
    )


def test_only_the_owner_or_a_service_user_may_read_a_task() -> None:
    task = fold(uuid4(), [submitted("alice")])
    assert may_read(task, asked("alice"))
    assert may_read(task, asked("guest", service=True))
    assert not may_read(task, asked("bob"))
    assert not may_read(task, asked(None))
    anonymous = fold(uuid4(), [submitted(None)])
    assert not may_read(anonymous, asked(None))  # no owner is nobody's to read
    assert not may_read(fold(uuid4(), []), asked("guest", service=True))  # never submitted


def test_the_answer_goes_to_the_askers_own_inbox_unless_a_service_user_names_one() -> None:
    assert reply_inbox(asked("alice", sender="bob")) == "alice"
    assert reply_inbox(asked("guest", service=True, sender="client-7")) == "client-7"
    assert reply_inbox(asked(None, sender="bob")) is None


def test_the_view_is_the_task_folds_state_and_shrinks_when_too_large() -> None:
    spec = submitted("alice")
    done = TaskSucceeded(task_id=spec.task_id, agent_id="a-1", attempt=1, result={"n": 1})
    records = [record(1, spec), record(2, done)]
    task = fold(spec.task_id, [spec, done])
    view = view_of(task, records)
    assert (view.found, view.state, view.result, view.stream_version) == (
        True,
        "succeeded",
        {"n": 1},
        2,
    )
    assert [e.type for e in view.timeline] == ["TaskSubmitted", "TaskSucceeded"]
    assert view.timeline[1].summary == "succeeded on a-1 (attempt 1)"
    less = smaller(view)
    assert less is not None
    assert (less.timeline, less.earlier_events) == ((), 2)
    least = smaller(less)
    assert least is not None
    assert (least.result, least.result_omitted) == (None, True)
    assert smaller(least) is None
