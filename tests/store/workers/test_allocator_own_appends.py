"""The allocator applies its own appends from their result, and reads the store when it must."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

from contracts import AgentJoined, TaskAssigned, TaskSubmitted, utcnow
from workers.allocator.handlers import Allocator
from workers.runtime.clock import SystemClock
from workers.runtime.messages import new_event
from workers.runtime.settings import WorkerSettings
from workers.store import open_store
from workers.store.base import StreamAppend


async def test_own_append_is_applied_without_a_read_and_a_foreign_one_forces_a_read(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    await store.start()
    try:
        no_publisher: Any = None  # placing publishes nothing here: only the view is looked at
        allocator = Allocator(store, no_publisher, SystemClock(), WorkerSettings(), replica="0")
        a, b = uuid4(), uuid4()
        await store.append(
            "agent-x", 0, [new_event(AgentJoined(agent_id="x", capabilities=("c",), capacity=2))]
        )
        for t in (a, b):
            await store.append(
                f"task-{t}",
                0,
                [
                    new_event(
                        TaskSubmitted(submitted_at=utcnow(), task_id=t, capability="c", ready=True)
                    )
                ],
            )
        await allocator.catch_up()
        assert allocator.view.position == 3

        assigned = TaskAssigned(task_id=a, agent_id="x", attempt=1, fencing_token=2, reason="r")
        mine = await store.append_many([StreamAppend(f"task-{a}", 1, [new_event(assigned)])])
        assert allocator._apply_own(mine)  # right after the view: applied from the result
        assert allocator.view.position == 4
        assert allocator.view.tasks[a].state == "assigned"
        assert allocator.view.agents["x"].inflight == {a}

        # someone else records an event first: ours is not next to the view any more
        other = TaskAssigned(task_id=b, agent_id="x", attempt=1, fencing_token=2, reason="r")
        await store.append(f"task-{b}", 1, [new_event(other)])
        late = await store.append_many(
            [
                StreamAppend(
                    "agent-x",
                    1,
                    [new_event(AgentJoined(agent_id="x", capabilities=("c",), capacity=3))],
                )
            ]
        )
        assert not allocator._apply_own(late)
        assert allocator.view.position == 4  # nothing applied out of order
        await allocator.catch_up()
        assert allocator.view.position == 6
        assert allocator.view.agents["x"].inflight == {a, b}
        assert allocator.view.agents["x"].capacity == 3
    finally:
        await store.close()
