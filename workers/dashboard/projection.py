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

from contracts import (
    ContractError,
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskProgressed,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.dashboard.throughput import Throughput
from workers.registry.state import Agent, evolve
from workers.runtime.messages import load_event
from workers.store.base import RecordedEvent
from workers.tasks.state import TERMINAL

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
    """What the task list shows of one task; the timeline is read from its stream on demand."""

    task_id: UUID
    state: str
    capability: str
    priority: int
    submitted_at: datetime
    changed_at: datetime
    attempt: int = 0
    agent_id: str | None = None
    progress: float | None = None
    error: str | None = None


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
        agent_id = record.stream.removeprefix("agent-")
        line = self.agents.get(agent_id)
        if line is None:
            line = self.agents[agent_id] = AgentLine(
                Agent(agent_id), record.recorded_at, record.recorded_at
            )
        # the registry's own fold, so the status here is the one `rally agents` shows
        line.agent = evolve(line.agent, event)
        line.changed_at = record.recorded_at

    def _hold(self, agent_id: str, task_id: UUID) -> None:
        line = self.agents.get(agent_id)
        if line is None:  # assigned before its join was seen: cannot happen in order, but cheap
            return
        line.inflight.add(task_id)

    def _release(self, task: TaskLine) -> None:
        if task.agent_id is not None and task.agent_id in self.agents:
            self.agents[task.agent_id].inflight.discard(task.task_id)

    # ---- tasks ----
    def _task(self, record: RecordedEvent, event: Event) -> None:
        if isinstance(event, TaskSubmitted):
            if event.task_id in self.open_tasks:
                return
            new = TaskLine(
                task_id=event.task_id,
                state="pending",
                capability=event.capability,
                priority=event.priority,
                submitted_at=record.recorded_at,
                changed_at=record.recorded_at,
            )
            self.open_tasks[event.task_id] = new
            self.by_state["pending"] += 1
            self._touch(new)
            return
        task_id = getattr(event, "task_id", None)
        line = self.open_tasks.get(task_id) if isinstance(task_id, UUID) else None
        if line is None:
            return  # ended already, or a forward reference before its submit
        new_state = self._transition(line, event)
        if new_state is None:
            return
        line.changed_at = record.recorded_at
        if new_state != line.state:
            self.by_state[line.state] -= 1
            if not self.by_state[line.state]:
                del self.by_state[line.state]
            self.by_state[new_state] += 1
            line.state = new_state
        if new_state in TERMINAL:
            del self.open_tasks[line.task_id]
            self.throughput.add(record.recorded_at)
        self._touch(line)

    def _transition(self, line: TaskLine, event: Event) -> str | None:
        """The state after ``event`` (as workers/tasks/state.py folds it), None if unchanged."""
        match event:
            case TaskAssigned():
                self._release(line)
                line.agent_id, line.attempt, line.progress = event.agent_id, event.attempt, None
                self._hold(event.agent_id, line.task_id)
                return "assigned"
            case TaskStarted():
                return "running"
            case TaskProgressed():
                line.progress = event.progress
                return line.state
            case TaskSucceeded():
                self._release(line)
                return "succeeded"
            case TaskFailed():
                self._release(line)
                line.error = event.error
                return "failed"
            case TaskRequeued():
                self._release(line)
                line.agent_id = None
                return "pending"
            case TaskCancelled():
                self._release(line)
                line.error = event.reason
                return "cancelled"
            case TaskDead():
                self._release(line)
                line.error = event.error
                return "dead"
        return None

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
