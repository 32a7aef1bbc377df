"""The allocator's whole view, rebuilt from the history: agents, open tasks, resources.

``apply`` takes recorded events in position order. It is pure bookkeeping:
no I/O, no clock (times come from the events). Task and agent state come from
their owners' one typed fold (``workers.tasks.state``, ``workers.registry.state``);
the view adds only what placement needs beside it (submit order, the agents'
running work, when an assignment was recorded, the leases it holds). Tasks
leave the view when they end, so its size follows the open work, not the history.

An event ``apply`` cannot decode (a newer release's version, a broken payload) is
never skipped silently: its stream is *held* at that event (``held``, with the
reason). A held task is neither placed nor timed out (it waits in ``held_tasks``,
still counted on its agent); a held agent gets no new work; a held resource grants
nothing. Everything else goes on. ``refold`` takes the stream again from its first
event once it reads (after an upcaster ships), so the view then equals a full replay.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from contracts import (
    ContractError,
    Event,
    LeaseExpired,
    LeaseGranted,
    LeaseReleased,
    LeaseRequested,
    ResourceDeclared,
    TaskAssigned,
    TaskFailed,
    TaskRequeued,
    TaskSubmitted,
)
from workers.allocator.candidates import CandidateIndex
from workers.allocator.holds import Held, held_changed
from workers.registry import state as agents
from workers.runtime.messages import load_event
from workers.store.base import RecordedEvent
from workers.tasks.placement import ENDING, placeable, task_of
from workers.tasks.state import ACTIVE, Task, evolve

__all__ = ["ACTIVE", "AgentView", "Held", "Holder", "OpenTask", "Projection", "ResourceView"]

RESOURCE_PREFIX = "resource-"


@dataclass(slots=True)
class AgentView:
    state: agents.Agent
    inflight: set[UUID] = field(default_factory=set)  # tasks assigned to it and not over

    @property
    def agent_id(self) -> str:
        return self.state.agent_id

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def capabilities(self) -> tuple[str, ...]:
        return self.state.capabilities

    @property
    def capacity(self) -> int:
        return self.state.capacity


@dataclass(slots=True)
class OpenTask:
    task: Task  # the tasks domain's fold
    seq: int  # the position of its TaskSubmitted: first come, first placed
    correlation_id: UUID | None = None
    assigned_at: datetime | None = None  # when the current assignment was recorded
    leases: tuple[UUID, ...] = ()  # taken for the current assignment

    @property
    def task_id(self) -> UUID:
        return self.task.task_id

    @property
    def state(self) -> str | None:
        return self.task.state

    @property
    def placeable(self) -> bool:
        return placeable(self.task)


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
    declared: bool = False
    version: int = 0
    holders: dict[UUID, Holder] = field(default_factory=dict)
    waiters: OrderedDict[UUID, LeaseRequested] = field(default_factory=OrderedDict)


@dataclass
class Projection:
    rejection_cooldown_s: float = 1.0
    position: int = 0
    agents: dict[str, AgentView] = field(default_factory=dict)
    tasks: dict[UUID, OpenTask] = field(default_factory=dict)
    resources: dict[str, ResourceView] = field(default_factory=dict)
    # an agent that refused a task is not offered it again until then
    avoid: dict[tuple[UUID, str], datetime] = field(default_factory=dict)
    # why each open task that could not be placed waits, as of the last placement
    waits: dict[UUID, str] = field(default_factory=dict)
    # tasks whose placement failed for a reason of their own: left alone until then
    set_aside: dict[UUID, datetime] = field(default_factory=dict)
    # streams stopped at an event this code cannot decode, by stream name
    held: dict[str, Held] = field(default_factory=dict)
    held_tasks: dict[UUID, OpenTask] = field(default_factory=dict)  # the tasks of held streams
    # who may take a task of each capability, kept as agents and their work change; not
    # in a snapshot: rebuilt once when ``agents``/``held`` are replaced wholesale (restore)
    _index: CandidateIndex = field(default_factory=CandidateIndex, repr=False, compare=False)
    _indexed: tuple[object, object] | None = field(default=None, repr=False, compare=False)

    def candidates(self) -> CandidateIndex:
        """The candidate index, in step with ``agents`` and ``held``."""
        if (
            self._indexed is None
            or self._indexed[0] is not self.agents
            or (self._indexed[1] is not self.held)
        ):
            self._index = CandidateIndex()
            self._indexed = (self.agents, self.held)
            for agent_id in self.agents:
                self._touch(agent_id)
        return self._index

    def _touch(self, agent_id: str) -> None:
        """Something placement reads of this agent changed: re-file it (if indexed yet)."""
        if self._indexed is None:
            return  # built on first use, from the whole view
        view = self.agents.get(agent_id)
        if view is None:
            self._index.update(agent_id, (), placeable=False, has_slot=False)
            return
        self._index.update(
            agent_id,
            view.capabilities,
            placeable=view.status == "live" and agents.stream_of(agent_id) not in self.held,
            has_slot=len(view.inflight) < view.capacity,
            load=len(view.inflight),
            capacity=view.capacity,
        )

    def resource(self, name: str) -> ResourceView:
        view = self.resources.get(name)
        if view is None:
            view = self.resources[name] = ResourceView(name)
        return view

    def agent(self, agent_id: str) -> AgentView:
        view = self.agents.get(agent_id)
        if view is None:
            view = self.agents[agent_id] = AgentView(agents.Agent(agent_id))
        return view

    def apply(self, record: RecordedEvent) -> None:
        if record.position <= self.position:
            return  # already seen
        self.position = record.position
        if record.stream in self.held:
            self._while_held(record)
            return
        try:
            self._route(record)
        except (ContractError, TypeError, ValueError) as exc:
            # decoding comes before any change, so nothing of this record was applied
            self._hold(record, exc)

    def _route(self, record: RecordedEvent) -> None:
        stream = record.stream
        task_id = task_of(stream)
        if task_id is not None:
            self._task(task_id, record)
            return
        agent_id = agents.agent_of(stream)
        if agent_id is not None:
            view = self.agent(agent_id)
            view.state = agents.evolve(view.state, load_event(record))
            self._touch(agent_id)
        elif stream.startswith(RESOURCE_PREFIX):
            self._resource(load_event(record), record.version)

    # ---- streams held at an unreadable event ----
    def _hold(self, record: RecordedEvent, exc: Exception) -> None:
        held = Held(record.stream, record.position, record.type, record.schema_version, str(exc))
        self.held[record.stream] = held
        task_id = task_of(record.stream)
        open_task = self.tasks.pop(task_id, None) if task_id is not None else None
        if open_task is not None:
            self.held_tasks[open_task.task_id] = open_task
            self.waits.pop(open_task.task_id, None)
            self.set_aside.pop(open_task.task_id, None)
        agent_id = agents.agent_of(record.stream)
        if agent_id is not None:
            self._touch(agent_id)  # held: no new work for it
        held_changed(self, held, "held")

    def _while_held(self, record: RecordedEvent) -> None:
        """A later event of a held stream is read with the rest when the stream is
        taken again; only a task's end (its type suffices) lets the hold go."""
        task_id = task_of(record.stream)
        if task_id is None or record.type not in ENDING:
            return
        open_task = self.held_tasks.pop(task_id, None)
        if open_task is not None:
            self._release_agent(open_task)
        held_changed(self, self.held.pop(record.stream), "ended")

    def refold(self, stream: str, records: list[RecordedEvent]) -> None:
        """Take a held stream again from its first event (each must decode): what a full
        replay would have built of it, up to this view's position."""
        held = self.held.pop(stream)
        task_id = task_of(stream)
        if task_id is not None:
            open_task = self.held_tasks.pop(task_id, None)
            if open_task is not None:
                self._release_agent(open_task)
            self.avoid = {k: t for k, t in self.avoid.items() if k[0] != task_id}
        agent_id = agents.agent_of(stream)
        if agent_id is not None:
            self.agent(agent_id).state = agents.Agent(agent_id)
        if stream.startswith(RESOURCE_PREFIX):
            name = stream.removeprefix(RESOURCE_PREFIX)
            self.resources[name] = ResourceView(name)
        for record in records:
            if record.position <= self.position:
                self._route(record)
        if agent_id is not None:
            self._touch(agent_id)
        held_changed(self, held, "resumed")

    # ---- tasks ----
    # ---- tasks ----
    def _task(self, task_id: UUID, record: RecordedEvent) -> None:
        open_task = self.tasks.get(task_id)
        if record.type in ENDING:
            if open_task is not None:
                self._forget(open_task)
            return  # its payload (a result, perhaps large) is never read here
        event = load_event(record)
        if open_task is None:
            if isinstance(event, TaskSubmitted):
                # a stream may hold forward references (DependentAdded) before its submit
                task = evolve(Task(task_id, version=record.version - 1), event)
                correlation = record.metadata.get("correlation_id")
                self.tasks[task_id] = OpenTask(
                    task,
                    seq=record.position,
                    correlation_id=UUID(correlation) if correlation else None,
                )
            return  # not submitted yet, or already over
        before = open_task.task
        after = open_task.task = evolve(before, event)
        if isinstance(event, TaskAssigned):
            open_task.assigned_at, open_task.leases = record.recorded_at, event.leases
        elif (
            isinstance(event, TaskRequeued)
            and event.agent_id is not None
            and event.attempt == before.attempt
        ):
            # refused by the agent (the attempt was not used up): cool down
            until = record.recorded_at + timedelta(seconds=self.rejection_cooldown_s)
            self.avoid[(task_id, event.agent_id)] = until
        elif (
            isinstance(event, TaskFailed)
            and event.agent_id is not None
            and before.state == "assigned"
            and event.error_type == "Timeout"
        ):
            # assigned, never started (an agent that does not hear its inbox still looks
            # live): the next attempt goes elsewhere, not back into the same silence
            wait = max(self.rejection_cooldown_s, before.timeout_s)
            self.avoid[(task_id, event.agent_id)] = record.recorded_at + timedelta(seconds=wait)
        held_before = before.agent_id if before.state in ACTIVE else None
        held_after = after.agent_id if after.state in ACTIVE else None
        if held_before is not None and held_before != held_after:
            self.agent(held_before).inflight.discard(task_id)
            self._touch(held_before)
        if held_after is not None:
            self.agent(held_after).inflight.add(task_id)
            self._touch(held_after)

    def _release_agent(self, open_task: OpenTask) -> None:
        task = open_task.task
        if task.agent_id is not None and task.state in ACTIVE:
            self.agent(task.agent_id).inflight.discard(task.task_id)
            self._touch(task.agent_id)

    def _forget(self, open_task: OpenTask) -> None:
        task = open_task.task
        self._release_agent(open_task)
        del self.tasks[task.task_id]
        self.waits.pop(task.task_id, None)
        self.set_aside.pop(task.task_id, None)

    # ---- resources ----
    def _resource(self, event: Event, version: int) -> None:
        name = getattr(event, "resource", None)
        if not isinstance(name, str):
            return
        view = self.resource(name)
        view.version = version
        match event:
            case ResourceDeclared():
                view.capacity, view.declared = event.capacity, True
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
