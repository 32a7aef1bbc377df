"""The allocator's view of a task is the tasks domain's one fold of its stream; the events
that end a task drop it without their payload (a result, perhaps large) being validated."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from contracts import (
    AgentJoined,
    DependentAdded,
    Event,
    TaskAssigned,
    TaskDead,
    TaskFailed,
    TaskProgressed,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
)
from tests.unit.workers.test_allocator_planning import NOW as FEED_NOW
from tests.unit.workers.test_allocator_planning import Feed
from workers.allocator.projection import Projection
from workers.store import RecordedEvent
from workers.tasks.state import fold

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def history() -> list[tuple[str, Event]]:
    a, b, c = uuid4(), uuid4(), uuid4()
    out: list[tuple[str, Event]] = [
        ("agent-x", AgentJoined(agent_id="x", capabilities=("c",), capacity=4))
    ]
    for t in (a, b, c):
        out.append(
            (f"task-{t}", TaskSubmitted(submitted_at=NOW, task_id=t, capability="c", ready=True))
        )
        out.append(
            (
                f"task-{t}",
                TaskAssigned(task_id=t, agent_id="x", attempt=1, fencing_token=2, reason="r"),
            )
        )
        out.append((f"task-{t}", TaskStarted(task_id=t, agent_id="x", attempt=1, deadline=NOW)))
        out.append((f"task-{t}", TaskProgressed(task_id=t, agent_id="x", attempt=1, progress=0.5)))
    out.append((f"task-{a}", TaskSucceeded(task_id=a, agent_id="x", attempt=1, result=1)))
    out.append(
        (f"task-{b}", TaskFailed(task_id=b, agent_id="x", attempt=1, error="e", error_type="E"))
    )
    out.append(
        (
            f"task-{b}",
            TaskRetryScheduled(task_id=b, attempt=2, delay_s=1, not_before=NOW, reason="e"),
        )
    )
    out.append((f"task-{b}", TaskRequeued(task_id=b, attempt=2, reason="retry")))
    out.append((f"task-{c}", DependentAdded(task_id=c, dependent=uuid4())))
    out.append((f"task-{c}", TaskDead(task_id=c, attempt=1, error="e")))
    return out


def replay(events: list[tuple[str, Event]]) -> Projection:
    feed = Feed()  # each event at the next position and its stream's next version
    for stream, event in events:
        feed(stream, event)
    return feed.view


def test_the_view_of_an_open_task_is_the_one_fold_of_its_stream() -> None:
    events = history()
    view = replay(events)
    assert view.position == len(events)
    assert len(view.tasks) == 1  # a succeeded and c dead are gone; b is pending again
    (b,) = view.tasks.values()
    stream = [e for s, e in events if s == f"task-{b.task_id}"]
    assert b.task == fold(b.task_id, stream)
    assert (b.state, b.task.next_attempt, b.task.agent_id) == ("pending", 2, None)
    assert view.agents["x"].inflight == set()  # a ended, b failed, c died: none on x


def test_an_ending_event_is_not_validated() -> None:
    feed = Feed()
    tid = uuid4()
    feed(f"task-{tid}", TaskSubmitted(submitted_at=NOW, task_id=tid, capability="c", ready=True))
    feed.view.apply(
        RecordedEvent(
            position=feed.view.position + 1,
            stream=f"task-{tid}",
            version=2,
            id=uuid4(),
            type="TaskSucceeded",
            schema_version=1,
            data={"not": "a TaskSucceeded"},  # would fail validation if it were read
            metadata={},
            recorded_at=FEED_NOW,
        )
    )
    assert tid not in feed.view.tasks
