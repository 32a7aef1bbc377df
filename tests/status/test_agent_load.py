"""An agent's load in `rally agents` / `rally status` comes from the one task fold."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from contracts import TaskAssigned, TaskFailed, TaskRequeued, TaskStarted, TaskSubmitted
from workers.cli.agents_cmd import running_load
from workers.tasks.state import fold

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_load_counts_attempts_assigned_or_running_on_each_agent() -> None:
    ids = [uuid4() for _ in range(4)]
    submit = [
        TaskSubmitted(
            submitted_at=datetime.now(UTC), task_id=i, capability="x", submitted_by="c", ready=True
        )
        for i in ids
    ]

    def assign(n: int, agent: str) -> TaskAssigned:
        return TaskAssigned(task_id=ids[n], agent_id=agent, attempt=1, fencing_token=1, reason="t")

    tasks = [
        fold(ids[0], [submit[0], assign(0, "a")]),
        fold(
            ids[1],
            [
                submit[1],
                assign(1, "a"),
                TaskStarted(task_id=ids[1], agent_id="a", attempt=1, deadline=T0),
            ],
        ),
        fold(
            ids[2],
            [
                submit[2],
                assign(2, "b"),
                TaskFailed(task_id=ids[2], agent_id="b", attempt=1, error="boom"),
            ],
        ),
        fold(
            ids[3],
            [
                submit[3],
                assign(3, "b"),
                TaskRequeued(task_id=ids[3], attempt=2, reason="agent lost"),
            ],
        ),
    ]
    assert running_load(tasks) == {"a": 2}
