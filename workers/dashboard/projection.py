"""The dashboard's in-memory view of the fleet, fed one recorded event at a time.

Pure bookkeeping, no I/O and no clock: times come from the events. It is fed
incrementally (``apply`` in position order, from where it stopped), so a
refresh costs the events recorded since the last one, never the whole history.
Memory follows the open work and the fleet: a task that ends leaves the open
set and is remembered only among the most recently changed ones, while its
state still counts in ``by_state``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from contracts import ContractError, Event, TaskAssigned, TaskProgressed, TaskSubmitted
from workers.dashboard.throughput import Throughput
from workers.registry import state as agents
from workers.registry.state import Agent
from workers.runtime.messages import load_event
from workers.store.base import RecordedEvent
from workers.tasks import state as tasks
from workers.tasks.state import ACTIVE, Task

RECENT_TASKS = 200


@dataclass(slots=True)
class AgentLine:
    """An agent as the history tells it, with the tasks it holds now."""

    agent: Agent
    first_seen_at: datetime
    changed_at: datetime  # its latest recorded event (join, update, drain, loss, leave)
    inflight: set[UUID] = field(default_factory=set)


@dataclass(slots=True)
class TaskLine:
    """What the task list shows of one task: its state by the one task fold
    (workers/tasks/state.py), with the times and progress the history records beside it.
    The timeline is read from its stream on demand."""

    task: Task
    submitted_at: datetime
    changed_at: datetime
    progress: float | None = None  # of the current attempt; not part of the task's state

    @property
    def task_id(self) -> UUID:
        return self.task.task_id

    @property
    def state(self) -> str:
        return self.task.state or "pending"

    @property
    def capability(self) -> str:
        return self.task.spec.capability if self.task.spec else ""

    @property
    def priority(self) -> int:
        return self.task.spec.priority if self.task.spec else 0

    @property
    def attempt(self) -> int:
        return self.task.attempt

    @property
    def agent_id(self) -> str | None:
        return self.task.agent_id

    @property
    def holder(self) -> str | None:
        """The agent running its current attempt, if one is."""
        return self.task.agent_id if self.task.state in ACTIVE else None

    @property
    def error(self) -> str | None:
        task = self.task
        return task.reason if task.state in ("cancelled", "dead") else task.last_error

    def shown(self) -> tuple[object, ...]:
        return (self.state, self.attempt, self.agent_id, self.error)


@dataclass
class FleetProjection:
    """Agents, tasks by state, the recent tasks and the finish rate, from recorded events."""

    recent_limit: int = RECENT_TASKS
    position: int = 0
    unreadable: int = 0  # events this code could not decode: skipped, counted
    last_unreadable: str | None = None
    agents: dict[str, AgentLine] = field(default_factory=dict)
    by_state: Counter[str] = field(default_factory=Counter)
    open_tasks: dict[UUID, TaskLine] = field(default_factory=dict)
    recent: OrderedDict[UUID, TaskLine] = field(default_factory=OrderedDict)
    throughput: Throughput = field(default_factory=Throughput)

    def apply(self, record: RecordedEvent) -> None:
        """Take the next recorded event, in position order."""
        if record.position <= self.position:
            return  # already seen: a re-read page overlaps the last one
        self.position = record.position
        category = record.category
        if category not in ("agent", "task"):
            return  # not decoded at all: resources, idempotency keys, dead-letter audits
        try:
            event = load_event(record)
        except (ContractError, TypeError) as exc:
            # written by a newer version, or damaged: skip it, say so, keep going
            self.unreadable += 1
            self.last_unreadable = f"{record.type} at position {record.position}: {exc}"
            return
        if category == "agent":
            self._agent(record, event)
        else:
            self._task(record, event)

    # ---- agents ----
    def _agent(self, record: RecordedEvent, event: Event) -> None:
        agent_id = agents.agent_of(record.stream) or record.stream
        line = self.agents.get(agent_id)
        if line is None:
            line = self.agents[agent_id] = AgentLine(
                Agent(agent_id), record.recorded_at, record.recorded_at
            )
        # the registry's own fold, so the status here is the one `rally agents` shows
        line.agent = agents.evolve(line.agent, event)
        line.changed_at = record.recorded_at

    def _hold(self, agent_id: str | None, task_id: UUID, held: bool) -> None:
        line = self.agents.get(agent_id) if agent_id is not None else None
        if line is None:  # assigned before its join was seen: cannot happen in order, but cheap
            return
        if held:
            line.inflight.add(task_id)
        else:
            line.inflight.discard(task_id)

    # ---- tasks ----
    def _task(self, record: RecordedEvent, event: Event) -> None:
        if isinstance(event, TaskSubmitted):
            if event.task_id in self.open_tasks:
                return
            task = tasks.evolve(Task(event.task_id), event)
            new = TaskLine(task, record.recorded_at, record.recorded_at)
            self.open_tasks[event.task_id] = new
            self.by_state[new.state] += 1
            self._touch(new)
            return
        task_id = getattr(event, "task_id", None)
        line = self.open_tasks.get(task_id) if isinstance(task_id, UUID) else None
        if line is None:
            return  # ended already, or a forward reference before its submit
        before, state, holder = line.shown(), line.state, line.holder
        line.task = tasks.evolve(line.task, event)
        if isinstance(event, TaskAssigned):
            line.progress = None  # a new attempt starts from nothing
        elif isinstance(event, TaskProgressed):
            line.progress = event.progress
        elif line.shown() == before:
            return  # nothing the list shows changed (readiness, a retry's schedule)
        if line.holder != holder:
            self._hold(holder, line.task_id, held=False)
            self._hold(line.holder, line.task_id, held=True)
        line.changed_at = record.recorded_at
        if line.state != state:
            self.by_state[state] -= 1
            if not self.by_state[state]:
                del self.by_state[state]
            self.by_state[line.state] += 1
        if line.task.terminal:
            del self.open_tasks[line.task_id]
            self.throughput.add(record.recorded_at)
        self._touch(line)

    def _touch(self, line: TaskLine) -> None:
        self.recent[line.task_id] = line
        self.recent.move_to_end(line.task_id)
        while len(self.recent) > self.recent_limit:
            self.recent.popitem(last=False)

    # ---- reads ----
    def recent_tasks(self, state: str | None = None, limit: int = 50) -> list[TaskLine]:
        """The most recently changed tasks first, optionally of one state."""
        out: list[TaskLine] = []
        for line in reversed(self.recent.values()):
            if state is None or line.state == state:
                out.append(line)
                if len(out) >= limit:
                    break
        return out
