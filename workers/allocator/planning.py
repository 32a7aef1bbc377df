"""What the allocator decides, given its view and the time — pure, no I/O.

Each step adds events (per stream, with the stream's expected version) and
side effects to one ``Plan``, which the handler appends in one transaction:

1. ``on_commands``: resource declarations and lease requests / releases.
2. ``settle_leases``: release the leases of tasks that ended, expire those
   of agents that are gone or that were not renewed in time.
3. ``grant_waiters``: give free units to agents waiting, first come first.
4. ``place``: ready tasks by priority then submit order, each on the least
   loaded live agent with the capability and a free slot, holding a lease on
   every resource it needs — or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from contracts import (
    AcquireLease,
    AssignTask,
    DeclareResource,
    Event,
    LeaseAcquired,
    LeaseExpired,
    LeaseGranted,
    LeaseLost,
    LeaseReleased,
    LeaseRequested,
    ReleaseLease,
    RenewLease,
    ResourceDeclared,
    TaskAssigned,
    TaskTimerDue,
)
from workers.allocator.projection import ACTIVE, AgentView, Holder, Projection, TaskView
from workers.runtime.messages import Effect

LeaseCommand = DeclareResource | AcquireLease | RenewLease | ReleaseLease


def task_stream(task_id: UUID) -> str:
    return f"task-{task_id}"


def resource_stream(name: str) -> str:
    return f"resource-{name}"


@dataclass
class Plan:
    appends: dict[str, tuple[int, list[Event]]] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    direct: list[Effect] = field(default_factory=list)  # notices that record nothing
    placed: int = 0
    freed: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    ended: set[UUID] = field(default_factory=set)  # leases released/expired in this plan

    def add(self, stream: str, expected_version: int, event: Event) -> int:
        """Queue ``event`` on ``stream``; returns the version it will be recorded at."""
        expected, events = self.appends.setdefault(stream, (expected_version, []))
        events.append(event)
        return expected + len(events)

    @property
    def empty(self) -> bool:
        return not self.appends and not self.effects


# ---- 1. commands ----


def on_commands(proj: Projection, commands: list[LeaseCommand], now: datetime, plan: Plan) -> None:
    for cmd in commands:
        match cmd:
            case DeclareResource():
                view = proj.resource(cmd.resource)
                declared = _declared_capacity(plan, cmd.resource, view.capacity)
                if declared != cmd.capacity:
                    event = ResourceDeclared(resource=cmd.resource, capacity=cmd.capacity)
                    plan.add(resource_stream(cmd.resource), view.version, event)
            case AcquireLease():
                view = proj.resource(cmd.resource)
                if cmd.lease_id in view.holders or cmd.lease_id in view.waiters:
                    continue  # a repeated request
                request = LeaseRequested(
                    resource=cmd.resource,
                    lease_id=cmd.lease_id,
                    agent_id=cmd.agent_id,
                    ttl_s=cmd.ttl_s,
                )
                plan.add(resource_stream(cmd.resource), view.version, request)
            case RenewLease():
                holder = _holder(proj, cmd.resource, cmd.lease_id, cmd.fencing_token)
                if holder is None:
                    lost = LeaseLost(
                        resource=cmd.resource,
                        lease_id=cmd.lease_id,
                        fencing_token=cmd.fencing_token,
                        reason="not held: expired, released or never granted",
                    )
                    plan.direct.append(Effect(lost, to=cmd.agent_id))
                else:
                    holder.expires_at = now + timedelta(seconds=holder.ttl_s)
            case ReleaseLease():
                holder = _holder(proj, cmd.resource, cmd.lease_id, cmd.fencing_token)
                if holder is not None and holder.lease_id not in plan.ended:
                    _end(proj, plan, cmd.resource, holder, None)


def _declared_capacity(plan: Plan, name: str, current: int) -> int:
    pending = plan.appends.get(resource_stream(name))
    for event in reversed(pending[1] if pending else []):
        if isinstance(event, ResourceDeclared):
            return event.capacity
    return current


def _holder(proj: Projection, resource: str, lease_id: UUID, token: int) -> Holder | None:
    view = proj.resources.get(resource)
    holder = view.holders.get(lease_id) if view else None
    return holder if holder is not None and holder.fencing_token == token else None


def renew_agent_leases(proj: Projection, agent_id: str, now: datetime) -> None:
    """A heartbeat renews every direct lease its agent holds."""
    for view in proj.resources.values():
        for holder in view.holders.values():
            if holder.agent_id == agent_id and holder.task_id is None:
                holder.expires_at = now + timedelta(seconds=holder.ttl_s)


# ---- 2. leases that must end ----


def settle_leases(proj: Projection, now: datetime, plan: Plan) -> None:
    for view in proj.resources.values():
        for holder in list(view.holders.values()):
            if holder.lease_id in plan.ended:
                continue
            agent = proj.agents.get(holder.agent_id)
            if agent is not None and agent.status in ("lost", "left"):
                _end(proj, plan, view.name, holder, f"agent {holder.agent_id} {agent.status}")
            elif holder.task_id is not None:
                task = proj.tasks.get(holder.task_id)
                if task is None or task.state not in ACTIVE or holder.lease_id not in task.leases:
                    _end(proj, plan, view.name, holder, None)  # the task let go of it
            elif holder.expires_at <= now:
                _end(proj, plan, view.name, holder, f"not renewed within {holder.ttl_s:g}s")


def _end(proj: Projection, plan: Plan, resource: str, holder: Holder, expired: str | None) -> None:
    view = proj.resource(resource)
    common = {
        "resource": resource,
        "lease_id": holder.lease_id,
        "agent_id": holder.agent_id,
        "task_id": holder.task_id,
        "fencing_token": holder.fencing_token,
    }
    if expired is None:
        plan.add(resource_stream(resource), view.version, LeaseReleased.model_validate(common))
    else:
        event = LeaseExpired.model_validate({**common, "reason": expired})
        plan.add(resource_stream(resource), view.version, event)
        if holder.task_id is None:
            lost = LeaseLost(
                resource=resource,
                lease_id=holder.lease_id,
                fencing_token=holder.fencing_token,
                reason=expired,
            )
            plan.effects.append(Effect(lost, to=holder.agent_id))
    plan.ended.add(holder.lease_id)
    plan.freed[resource] += 1


def free_units(proj: Projection, plan: Plan, resource: str) -> int:
    view = proj.resources.get(resource)
    if view is None:
        return 0
    capacity = _declared_capacity(plan, resource, view.capacity)
    return capacity - len(view.holders) + plan.freed[resource]


# ---- 3. agents waiting for a lease ----


def grant_waiters(proj: Projection, now: datetime, plan: Plan) -> None:
    for view in proj.resources.values():
        waiting = list(view.waiters.values())
        pending = plan.appends.get(resource_stream(view.name))
        waiting += [e for e in (pending[1] if pending else []) if isinstance(e, LeaseRequested)]
        for request in waiting:
            if free_units(proj, plan, view.name) <= 0:
                break
            agent = proj.agents.get(request.agent_id)
            if agent is None or agent.status not in ("live", "draining"):
                continue  # granted to no one who is gone; it waits (or expires with them)
            expires = now + timedelta(seconds=request.ttl_s)
            stream = resource_stream(view.name)
            token = _next_version(plan, stream, view.version)
            granted = LeaseGranted(
                resource=view.name,
                lease_id=request.lease_id,
                agent_id=request.agent_id,
                fencing_token=token,
                ttl_s=request.ttl_s,
                expires_at=expires,
            )
            plan.add(stream, view.version, granted)
            plan.freed[view.name] -= 1
            acquired = LeaseAcquired(
                resource=view.name,
                lease_id=request.lease_id,
                fencing_token=token,
                expires_at=expires,
            )
            plan.effects.append(Effect(acquired, to=request.agent_id))


def _next_version(plan: Plan, stream: str, current: int) -> int:
    pending = plan.appends.get(stream)
    return (pending[0] + len(pending[1]) if pending else current) + 1


# ---- 4. placement ----


def place(proj: Projection, now: datetime, plan: Plan) -> None:
    load = {a.agent_id: len(a.inflight) for a in proj.agents.values()}
    by_capability: dict[str, list[AgentView]] = defaultdict(list)
    for agent in proj.agents.values():
        if agent.status == "live":
            for capability in agent.capabilities:
                by_capability[capability].append(agent)
    full: set[str] = set()  # capabilities with no free slot left: skip their tasks fast
    ready = sorted(
        (t for t in proj.tasks.values() if t.placeable), key=lambda t: (-t.priority, t.seq)
    )
    for task in ready:
        if task.capability in full or task_stream(task.task_id) in plan.appends:
            continue
        candidates = [
            a
            for a in by_capability.get(task.capability, ())
            if load[a.agent_id] < a.capacity
            and proj.avoid.get((task.task_id, a.agent_id), now) <= now
        ]
        if not candidates:
            if not any(
                load[a.agent_id] < a.capacity for a in by_capability.get(task.capability, ())
            ):
                full.add(task.capability)
            continue
        if any(free_units(proj, plan, r) <= 0 for r in task.resources):
            continue  # not all its resources can be held now: it waits, and keeps its turn
        best = min(
            candidates, key=lambda a: (load[a.agent_id] / a.capacity, load[a.agent_id], a.agent_id)
        )
        reason = (
            f"least loaded of {len(candidates)} agent{'s' if len(candidates) != 1 else ''} "
            f"with {task.capability!r} ({load[best.agent_id]}/{best.capacity} busy)"
        )
        if task.resources:
            reason += f", holding {', '.join(task.resources)}"
        _assign(proj, plan, task, best, reason, now)
        load[best.agent_id] += 1


def _assign(
    proj: Projection, plan: Plan, task: TaskView, agent: AgentView, reason: str, now: datetime
) -> None:
    leases: list[UUID] = []
    for name in task.resources:
        view = proj.resource(name)
        stream = resource_stream(name)
        lease_id = uuid4()
        granted = LeaseGranted(
            resource=name,
            lease_id=lease_id,
            agent_id=agent.agent_id,
            task_id=task.task_id,
            fencing_token=_next_version(plan, stream, view.version),
            ttl_s=task.timeout_s,
            expires_at=now + timedelta(seconds=task.timeout_s),
        )
        plan.add(stream, view.version, granted)
        plan.freed[name] -= 1
        leases.append(lease_id)
    token = task.version + 1  # the task stream version this TaskAssigned is recorded at
    assigned = TaskAssigned(
        task_id=task.task_id,
        agent_id=agent.agent_id,
        attempt=task.next_attempt,
        fencing_token=token,
        reason=reason,
        leases=tuple(leases),
    )
    plan.add(task_stream(task.task_id), task.version, assigned)
    notice = AssignTask(
        task_id=task.task_id,
        capability=task.capability,
        payload=task.payload,
        attempt=task.next_attempt,
        fencing_token=token,
        timeout_s=task.timeout_s,
        leases=tuple(leases),
    )
    plan.effects.append(Effect(notice, to=agent.agent_id, correlation_id=task.correlation_id))
    # a watchdog for an attempt that is never started (the start sets its own deadline)
    timer = TaskTimerDue(task_id=task.task_id, attempt=task.next_attempt, timer="timeout")
    plan.effects.append(
        Effect(
            timer,
            not_before=now + timedelta(seconds=task.timeout_s),
            correlation_id=task.correlation_id,
        )
    )
    plan.placed += 1


# ---- agents that are gone ----


def orphaned(proj: Projection) -> list[tuple[UUID, str, str]]:
    """(task, agent, why) for every task held by an agent that was lost or left."""
    out = []
    for task in proj.tasks.values():
        if task.state in ACTIVE and task.agent_id is not None:
            agent = proj.agents.get(task.agent_id)
            if agent is not None and agent.status in ("lost", "left"):
                out.append((task.task_id, task.agent_id, f"agent {task.agent_id} {agent.status}"))
    return out


def next_wakeup(proj: Projection, now: datetime) -> datetime | None:
    """When time alone changes a decision: a direct lease expires, a cool-down ends."""
    times = [
        h.expires_at
        for view in proj.resources.values()
        for h in view.holders.values()
        if h.task_id is None
    ]
    times += [t for t in proj.avoid.values() if t > now]
    return min(times, default=None)
