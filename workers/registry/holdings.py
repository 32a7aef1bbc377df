"""What the task history says an agent holds: the tasks whose current attempt it was given.

A draining agent leaves once it holds nothing. Its heartbeat cannot say so: a task it
started after its last beat is missing from it, and leaving on that word hands the task
back while the agent still runs it (its reports are then refused as stale). So the
registry asks the task history, read through the tasks' one fold
(``workers.tasks.state``), never building task state of its own.

Finding the tasks without folding the whole history: an index from the ``task-*``
records, followed from the store by position, keeps for each task the agent of its
latest ``TaskAssigned`` until a record that ends that attempt. It only names candidates;
:meth:`Holdings.held_by` folds each candidate's stream and counts those whose current
attempt is the agent's and still active (assigned or running). The index holds the open
assignments only, so its size follows the running work, not the history.

Where it starts: not at position 0 (months of history on a process's first drain) but
from the tasks read model (``workers.readmodels.tasks``), whose rows keep each task's
``state`` and ``agent_id``: the open assignments it lists, at its checkpoint, then the
records after that checkpoint from the store (what was assigned or ended since the read
model last caught up). A store with no read model yet starts at 0, as before. The
rows only seed candidates: the answer is still the fold of each candidate's stream.
"""

from __future__ import annotations

from uuid import UUID

import structlog

from contracts import TaskAssigned
from workers.readmodels.checkpoint import load as load_checkpoint
from workers.readmodels.sql import database_for
from workers.readmodels.task_queries import open_assignments
from workers.readmodels.tasks import NAME as TASKS_VIEW
from workers.runtime.messages import load_event
from workers.store.base import EventStore
from workers.store.errors import StoreError
from workers.tasks.state import ACTIVE, STREAM_PREFIX, fold, stream_of, task_of

log = structlog.get_logger(__name__)

PAGE = 1000
# records after which no agent holds the attempt the last TaskAssigned gave
RELEASING = frozenset({"TaskRequeued", "TaskSucceeded", "TaskFailed", "TaskCancelled", "TaskDead"})


class Holdings:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.position = 0  # how far the task records have been followed
        self._holder: dict[UUID, str] = {}  # task -> agent of its open assignment
        self._by_agent: dict[str, set[UUID]] = {}
        self._seeded = False

    async def seed(self) -> None:
        """Start from the tasks read model's open assignments, at its checkpoint.

        The checkpoint is read before the rows: rows committed since are only newer,
        and every record after the checkpoint is followed again anyway, so a task
        assigned or ended since the read model's last catch-up is still seen."""
        try:
            db = database_for(self.store)
            checkpoint = await load_checkpoint(db, TASKS_VIEW)
            rows = await open_assignments(db)
        except StoreError as exc:
            # no read model in this store (yet; SQLite says so as it says "unavailable"):
            # follow the whole history. A store that is down fails that read instead.
            log.info("holdings.no_read_model", error=str(exc))
            return
        for task_id, agent_id in rows:
            self._hold(task_id, agent_id)
        self.position = checkpoint.position
        self._seeded = True
        log.info("holdings.seeded", position=self.position, open_assignments=len(rows))

    async def catch_up(self) -> None:
        """Follow the task records written since the last call."""
        if not self._seeded and self.position == 0:  # nothing followed yet
            await self.seed()
        while True:
            page = await self.store.read_all(self.position, PAGE, stream_prefix=STREAM_PREFIX)
            for record in page:
                self.position = record.position
                task_id = task_of(record.stream)
                if task_id is None:
                    continue
                if record.type == "TaskAssigned":
                    event = load_event(record)
                    if isinstance(event, TaskAssigned):
                        self._hold(task_id, event.agent_id)
                elif record.type in RELEASING:
                    self._release(task_id)  # a result's payload is never decoded here
            if len(page) < PAGE:
                return

    async def held_by(self, agent_id: str) -> frozenset[UUID]:
        """The tasks whose current attempt the task history gives to ``agent_id`` now."""
        await self.catch_up()
        held: set[UUID] = set()
        for task_id in list(self._by_agent.get(agent_id, ())):
            records = await self.store.read(stream_of(task_id))
            task = fold(task_id, [load_event(r) for r in records])
            if task.state in ACTIVE and task.agent_id == agent_id:
                held.add(task_id)
            elif self._holder.get(task_id) == agent_id:
                self._release(task_id)  # the index was behind the stream: settle it now
        return frozenset(held)

    def _hold(self, task_id: UUID, agent_id: str) -> None:
        self._release(task_id)
        self._holder[task_id] = agent_id
        self._by_agent.setdefault(agent_id, set()).add(task_id)

    def _release(self, task_id: UUID) -> None:
        agent_id = self._holder.pop(task_id, None)
        if agent_id is None:
            return
        tasks = self._by_agent.get(agent_id)
        if tasks is not None:
            tasks.discard(task_id)
            if not tasks:
                del self._by_agent[agent_id]
