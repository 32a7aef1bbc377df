"""The task manager's memory of the tasks it last wrote: a read saved per message.

Replicas share nothing, so an entry can be stale (another replica, or the
allocator, appended since). That is safe because the cache is only ever a
guess: every append carries the cached version as its expected version, so a
stale guess fails with a conflict and the handler reloads from the store; and
a decision *not* to write (a report judged stale, a command with no effect)
is only taken on a fresh read (see ``TaskManager.on_command``).
"""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID

from workers.tasks.state import TERMINAL, Task


class TaskCache:
    """The newest known state of recently written tasks, least recently used out first."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._tasks: OrderedDict[UUID, Task] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, task_id: UUID) -> Task | None:
        task = self._tasks.get(task_id)
        if task is None:
            self.misses += 1
            return None
        self._tasks.move_to_end(task_id)
        self.hits += 1
        return task

    def put(self, task: Task) -> None:
        if task.state in TERMINAL and not task.dependents:
            # nothing more is expected for it: keep the room for live tasks
            self._tasks.pop(task.task_id, None)
            return
        self._tasks[task.task_id] = task
        self._tasks.move_to_end(task.task_id)
        while len(self._tasks) > self.capacity:
            self._tasks.popitem(last=False)

    def forget(self, task_id: UUID) -> None:
        self._tasks.pop(task_id, None)

    def __len__(self) -> int:
        return len(self._tasks)
