"""The allocator's whole view, rebuilt from the history: agents, open tasks, resources.

``apply`` takes recorded events in position order. It is pure bookkeeping:
no I/O, no clock (times come from the events). Tasks leave the view when they
end, so its size follows the open work, not the history.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from pydantic import JsonValue

from contracts import (
    AgentDraining,
    AgentJoined,
    AgentLeft,
    AgentLost,
    AgentUpdated,
    Event,
    LeaseExpired,
    LeaseGranted,
    LeaseReleased,
    LeaseRequested,
    ResourceDeclared,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskReady,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.runtime.messages import load_event
from workers.store.base import RecordedEvent

ACTIVE = frozenset({"assigned", "running"})


@dataclass(slots=True)
class AgentView:
    agent_id: str
    capabilities: frozenset[str] = frozenset()
    capacity: int = 0
    status: str = "live"  # live | draining | left | lost
    inflight: set[UUID] = field(default_factory=set)

    @property
    def placeable(self) -> bool:
        return self.status == "live" and len(self.inflight) < self.capacity


@dataclass(slots=True)
class TaskView:
    task_id: UUID
    capability: str
    priority: int
    seq: int  # the position of its TaskSubmitted: first come, first placed
    version: int
    payload: JsonValue = None
    resources: tuple[str, ...] = ()
    timeout_s: float = 300.0
    max_attempts: int = 3
    state: str = "pending"
    ready: bool = False
    attempt: int = 0
    next_attempt: int = 1
    agent_id: str | None = None
    leases: tuple[UUID, ...] = ()
    correlation_id: UUID | None = None

    @property
    def placeable(self) -> bool:
        return self.state == "pending" and self.ready


@dataclass(slots=True)
class Holder:
    lease_id: UUID
    agent_id: str
    task_id: UUID | None
    fencing_token: int
    ttl_s: float
    expires_at: datetime  # for direct leases; renewed in memory (not an event each)


@dataclass(slots=True)
class ResourceView:
    name: str
    capacity: int = 0  # 0 until declared: nothing is granted on an undeclared resource
    version: int = 0
    holders: dict[UUID, Holder] = field(default_factory=dict)
    waiters: OrderedDict[UUID, LeaseRequested] = field(default_factory=OrderedDict)


@dataclass
class Projection:
    rejection_cooldown_s: float = 1.0
    position: int = 0
    agents: dict[str, AgentView] = field(default_factory=dict)
    tasks: dict[UUID, TaskView] = field(default_factory=dict)
    resources: dict[str, ResourceView] = field(default_factory=dict)
    # an agent that refused a task is not offered it again until then
    avoid: dict[tuple[UUID, str], datetime] = field(default_factory=dict)

    def resource(self, name: str) -> ResourceView:
        view = self.resources.get(name)
        if view is None:
            view = self.resources[name] = ResourceView(name)
        return view

    def apply(self, record: RecordedEvent) -> None:
        if record.position <= self.position:
            return  # already seen
        self.position = record.position
        category = record.stream.split("-", 1)[0]
        if category not in ("agent", "task", "resource"):
            return
        if category == "task" and record.type in _STATE_ONLY:
            self._task_state_only(record)
            return
        event = load_event(record)
        if category == "agent":
            self._agent(event)
        elif category == "task":
            self._task(event, record)
        else:
            self._resource(event, record.version)

    # ---- agents ----
    def _agent(self, event: Event) -> None:
        match event:
            case AgentJoined() | AgentUpdated():
                view = self.agents.setdefault(event.agent_id, AgentView(event.agent_id))
                view.capabilities = frozenset(event.capabilities)
                view.capacity = event.capacity
                view.status = "live"
            case AgentDraining():
                self._agent_status(event.agent_id, "draining")
            case AgentLeft():
                self._agent_status(event.agent_id, "left")
            case AgentLost():
                self._agent_status(event.agent_id, "lost")

    def _agent_status(self, agent_id: str, status: str) -> None:
        view = self.agents.setdefault(agent_id, AgentView(agent_id))
        view.status = status

    # ---- tasks ----
    def _task(self, event: Event, record: RecordedEvent) -> None:
        if isinstance(event, TaskSubmitted):
            correlation = record.metadata.get("correlation_id")
            self.tasks[event.task_id] = TaskView(
                task_id=event.task_id,
                capability=event.capability,
                priority=event.priority,
                seq=record.position,
                version=record.version,
                payload=event.payload,
                resources=tuple(dict.fromkeys(event.resources)),
                timeout_s=event.timeout_s,
                max_attempts=event.max_attempts,
                ready=event.ready,
                correlation_id=UUID(correlation) if correlation else None,
            )
            return
        task_id = getattr(event, "task_id", None)
        view = self.tasks.get(task_id) if isinstance(task_id, UUID) else None
        if view is None:
            return  # ended, or a forward reference before its submit
        view.version = record.version
        match event:
            case TaskReady():
                view.ready = True
            case TaskAssigned():
                self._off_agent(view)
                view.state, view.attempt = "assigned", event.attempt
                view.agent_id, view.leases = event.agent_id, event.leases
                self.agents.setdefault(event.agent_id, AgentView(event.agent_id)).inflight.add(
                    view.task_id
                )
            case TaskStarted():
                view.state = "running"
            case TaskFailed():
                self._off_agent(view)
                view.state = "failed"
            case TaskRetryScheduled():
                view.next_attempt = event.attempt
            case TaskRequeued():
                if event.agent_id is not None and event.attempt == view.attempt:
                    # refused by the agent (the attempt was not used up): cool down
                    until = record.recorded_at + timedelta(seconds=self.rejection_cooldown_s)
                    self.avoid[(view.task_id, event.agent_id)] = until
                self._off_agent(view)
                view.state, view.next_attempt = "pending", event.attempt
            case TaskSucceeded() | TaskCancelled() | TaskDead():
                self._off_agent(view)
                del self.tasks[view.task_id]

    def _task_state_only(self, record: RecordedEvent) -> None:
        """An event whose fields placement does not read: no need to validate its payload."""
        task_id = _task_id(record.stream)
        view = self.tasks.get(task_id) if task_id is not None else None
        if view is None:
            return
        view.version = record.version
        if record.type == "TaskStarted":
            view.state = "running"
        elif record.type == "TaskFailed":
            self._off_agent(view)
            view.state = "failed"
        elif record.type in _ENDS:
            self._off_agent(view)
            del self.tasks[view.task_id]

    def _off_agent(self, view: TaskView) -> None:
        if view.agent_id is not None:
            agent = self.agents.get(view.agent_id)
            if agent is not None:
                agent.inflight.discard(view.task_id)
        view.agent_id, view.leases = None, ()

    # ---- resources ----
    def _resource(self, event: Event, version: int) -> None:
        name = getattr(event, "resource", None)
        if not isinstance(name, str):
            return
        view = self.resource(name)
        view.version = version
        match event:
            case ResourceDeclared():
                view.capacity = event.capacity
            case LeaseRequested():
                view.waiters[event.lease_id] = event
            case LeaseGranted():
                view.waiters.pop(event.lease_id, None)
                view.holders[event.lease_id] = Holder(
                    lease_id=event.lease_id,
                    agent_id=event.agent_id,
                    task_id=event.task_id,
                    fencing_token=event.fencing_token,
                    ttl_s=event.ttl_s,
                    expires_at=event.expires_at,
                )
            case LeaseReleased() | LeaseExpired():
                view.holders.pop(event.lease_id, None)
                view.waiters.pop(event.lease_id, None)


# task events whose payload placement never reads (see _task): the stream names the task
_ENDS = frozenset({"TaskSucceeded", "TaskCancelled", "TaskDead"})
_STATE_ONLY = frozenset(
    {"TaskStarted", "TaskFailed", "TaskProgressed", "DependentAdded", "DependencyResolved"} | _ENDS
)


def _task_id(stream: str) -> UUID | None:
    try:
        return UUID(stream.split("-", 1)[1])
    except (IndexError, ValueError):
        return None
