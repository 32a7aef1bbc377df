"""The allocator's projection skips validating events whose fields placement never reads;
it must end where validating every event would."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

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
from tests.workers.test_allocator_planning import Feed
from workers.allocator import projection
from workers.allocator.projection import Projection

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def history() -> list[tuple[str, Event]]:
    a, b, c = uuid4(), uuid4(), uuid4()
    out: list[tuple[str, Event]] = [
        ("agent-x", AgentJoined(agent_id="x", capabilities=("c",), capacity=4))
    ]
    for t in (a, b, c):
        out.append((f"task-{t}", TaskSubmitted(task_id=t, capability="c", ready=True)))
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


def test_skipping_validation_ends_where_full_validation_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = history()
    fast = replay(events)
    monkeypatch.setattr(projection, "_STATE_ONLY", frozenset())
    full = replay(events)
    assert fast.tasks == full.tasks
    assert fast.agents == full.agents
    assert fast.position == full.position == len(events)
    assert len(fast.tasks) == 1  # a succeeded and c dead are gone; b is pending again
    (b,) = fast.tasks.values()
    assert (b.state, b.next_attempt, b.agent_id) == ("pending", 2, None)
