"""What the allocator decides, given its view and the time — pure, no I/O.

Each step adds events (per stream, with the stream's expected version) and
side effects to one ``Plan``, which the handler appends in one transaction:

1. ``on_commands``: resource declarations and lease requests / releases.
2. ``settle_leases``: release the leases of tasks that ended, expire those
   of agents that are gone or that were not renewed in time.
3. ``grant_waiters``: give free units to agents waiting, first come first.
   (1-3 live in ``leases.py``.)
4. ``place``: ready tasks by priority then submit order, each on the least
   loaded live agent with the capability and a free slot, holding a lease on
   every resource it needs — or not at all. The task's events and effects
   come from the tasks domain (``workers.tasks.placement``); a task that waits
   gets a reason a user can read, and one whose assignment cannot be encoded
   is ended alone (``plan.undeliverable``) while the rest are placed.
5. ``orphaned`` / ``overdue``: tasks of agents that are gone, assignments
   never started in time, tasks pending past ``pending_timeout_s`` — found
   here, ended by the tasks domain's rules.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import structlog

from contracts import LeaseGranted, ResourceDeclared
from contracts.errors import MessageTooLarge
from workers.allocator.candidates import Key, Shelf, order_key
from workers.allocator.leases import (
    LeaseCommand,
    free_units,
    grant_waiters,
    on_commands,
    settle_leases,
)
from workers.allocator.plan import Plan, next_version, resource_stream
from workers.allocator.projection import ACTIVE, AgentView, OpenTask, Projection
from workers.tasks import placement

__all__ = [
    "LeaseCommand",
    "Plan",
    "free_units",
    "grant_waiters",
    "next_wakeup",
    "on_commands",
    "orphaned",
    "overdue",
    "place",
    "settle_leases",
    "why_waiting",
]

log = structlog.get_logger(__name__)

SET_ASIDE_S = 5.0  # a task whose placement raised is tried again after this long


# ---- 4. placement ----


def place(proj: Projection, now: datetime, plan: Plan) -> None:
    # only the candidates of each task's capability are looked at (the index), never the
    # fleet, and of those only the best few (the index keeps them in placement's order);
    # what this round places is counted here until its events come back
    index = proj.candidates()
    placed_now: dict[str, int] = defaultdict(int)
    filled: dict[str, int] = defaultdict(int)  # free agents of a capability this round filled
    shelf: Shelf = []
    refusals: dict[UUID, set[str]] = defaultdict(set)  # task -> agents it is not offered to
    for (task_id, agent_id), until in proj.avoid.items():
        if until > now:
            refusals[task_id].add(agent_id)

    def load(agent: AgentView) -> int:
        return len(agent.inflight) + placed_now[agent.agent_id]

    def key_now(agent_id: str) -> Key | None:
        agent = proj.agents[agent_id]
        busy = load(agent)
        return order_key(agent_id, busy, agent.capacity) if busy < agent.capacity else None

    full: set[str] = set()  # capabilities with no free slot left: skip their tasks fast
    ready = sorted(
        (t for t in proj.tasks.values() if t.placeable),
        key=lambda t: (-t.task.spec.priority if t.task.spec else 0, t.seq),
    )
    try:
        for open_task in ready:
            task = open_task.task
            spec = task.spec
            if spec is None or proj.set_aside.get(task.task_id, now) > now:
                continue
            capability = spec.capability
            resources = tuple(dict.fromkeys(spec.resources))
            undeclared = [r for r in resources if not _declared(proj, plan, r)]
            if undeclared:
                _wait(
                    proj,
                    plan,
                    task.task_id,
                    f"resource {', '.join(map(repr, undeclared))} "
                    f"{'is' if len(undeclared) == 1 else 'are'} not declared",
                )
                continue
            able = index.able_count(capability)
            if capability in full:
                _wait(proj, plan, task.task_id, _no_slot(capability, able))
                continue
            free = len(index.free_of(capability)) - filled[capability]
            refused = refusals.get(task.task_id, _NONE)
            avoided = sum(
                1 for a in refused if a in index.free_of(capability) and key_now(a) is not None
            )
            if free - avoided <= 0:
                if free <= 0:
                    full.add(capability)
                    _wait(proj, plan, task.task_id, _no_slot(capability, able))
                else:
                    why = f"refused by every free agent with {capability!r}"
                    _wait(proj, plan, task.task_id, why)
                continue
            busy = [r for r in resources if free_units(proj, plan, r) <= 0]
            if busy:
                # not all its resources can be held now: it waits, and keeps its turn
                why = f"every unit of {', '.join(map(repr, busy))} is held"
                _wait(proj, plan, task.task_id, why)
                continue
            picked = index.pick(capability, key_now, refused, shelf)
            if picked is None:  # never expected (counted free above): the scan, and say so
                log.error("allocator.index_out_of_step", capability=capability)
                picked = min(
                    (a for a in index.free_of(capability) if a not in refused and key_now(a)),
                    key=lambda a: key_now(a) or (0.0, 0, a),
                )
            best = proj.agents[picked]
            candidates = free - avoided
            reason = (
                f"least loaded of {candidates} agent{'s' if candidates != 1 else ''} "
                f"with {capability!r} ({load(best)}/{best.capacity} busy)"
            )
            if resources:
                reason += f", holding {', '.join(resources)}"
            try:
                placed = _assign(proj, plan, open_task, resources, best, reason, now)
            except Exception as exc:  # this task alone: the others are still placed
                log.warning("allocator.set_aside", task_id=str(task.task_id), error=repr(exc))
                proj.set_aside[task.task_id] = now + timedelta(seconds=SET_ASIDE_S)
                _wait(proj, plan, task.task_id, f"set aside: its placement failed: {exc!r}")
                continue
            if placed:
                proj.waits.pop(task.task_id, None)
                placed_now[best.agent_id] += 1
                moved = key_now(best.agent_id)
                if moved is None:  # full now: one free agent fewer for each of its capabilities
                    for each in index.capabilities_of(best.agent_id):
                        filled[each] += 1
                else:
                    index.moved(best.agent_id, moved)
    finally:
        index.restore(shelf)


_NONE: frozenset[str] = frozenset()


def _no_slot(capability: str, able: int) -> str:
    if not able:
        return f"no live agent with {capability!r}"
    return f"no free slot on the {able} live agent{'s' if able != 1 else ''} with {capability!r}"


def _declared(proj: Projection, plan: Plan, name: str) -> bool:
    view = proj.resources.get(name)
    if view is not None and view.declared:
        return True
    pending = plan.appends.get(resource_stream(name))
    return any(isinstance(e, ResourceDeclared) for e in (pending[1] if pending else []))


def _wait(proj: Projection, plan: Plan, task_id: UUID, why: str) -> None:
    if proj.waits.get(task_id) != why:
        proj.waits[task_id] = why
        plan.waits.append((task_id, why))


def _assign(
    proj: Projection,
    plan: Plan,
    open_task: OpenTask,
    resources: tuple[str, ...],
    agent: AgentView,
    reason: str,
    now: datetime,
) -> bool:
    """Plan the assignment and its leases; False if it cannot be delivered (it will end)."""
    task = open_task.task
    leases = tuple(uuid4() for _ in resources)
    assignment = placement.assign(
        task,
        agent.agent_id,
        reason=reason,
        leases=leases,
        correlation_id=open_task.correlation_id,
    )
    try:
        rows = [plan.encode(effect) for effect in assignment.effects]
    except MessageTooLarge as exc:
        plan.undeliverable.append((task.task_id, exc.detail))
        return False
    for name, lease_id in zip(resources, leases, strict=True):
        view = proj.resource(name)
        stream = resource_stream(name)
        granted = LeaseGranted(
            resource=name,
            lease_id=lease_id,
            agent_id=agent.agent_id,
            task_id=task.task_id,
            fencing_token=next_version(plan, stream, view.version),
            ttl_s=task.timeout_s,
            expires_at=now + timedelta(seconds=task.timeout_s),
        )
        plan.add(stream, view.version, granted)
        plan.freed[name] -= 1
    for event in assignment.events:
        plan.add(assignment.stream, assignment.expected_version, event)
    plan.outbox += rows
    plan.placed += 1
    return True


# ---- tasks that must end or fail: decided by the tasks domain, found here ----


def orphaned(proj: Projection) -> list[tuple[UUID, str, str]]:
    """(task, agent, why) for every task held by an agent that was lost or left."""
    out = []
    for open_task in proj.tasks.values():
        task = open_task.task
        if task.state in ACTIVE and task.agent_id is not None:
            agent = proj.agents.get(task.agent_id)
            if agent is not None and agent.status in ("lost", "left"):
                out.append((task.task_id, task.agent_id, f"agent {task.agent_id} {agent.status}"))
    return out


def overdue(proj: Projection, now: datetime) -> tuple[list[UUID], list[tuple[UUID, str]]]:
    """Assignments never started within their time-out, and tasks pending past theirs (why)."""
    not_started: list[UUID] = []
    expired: list[tuple[UUID, str]] = []
    for open_task in proj.tasks.values():
        task = open_task.task
        if task.state == "assigned" and open_task.assigned_at is not None:
            deadline = placement.not_started_by(task, open_task.assigned_at)
            if deadline is not None and deadline <= now:
                not_started.append(task.task_id)
        elif task.state == "pending":
            until = _pending_until(open_task)
            if until is not None and until <= now:
                expired.append((task.task_id, why_waiting(proj, open_task)))
    return not_started, expired


def why_waiting(proj: Projection, open_task: OpenTask) -> str:
    task = open_task.task
    if not task.ready and task.waiting_on:
        ids = ", ".join(sorted(str(d) for d in task.waiting_on))
        return f"waiting on dependencies {ids}"
    return proj.waits.get(task.task_id, "not placed yet")


def _pending_until(open_task: OpenTask) -> datetime | None:
    task = open_task.task
    if task.submitted_at is None:
        return None
    return task.submitted_at + timedelta(seconds=task.pending_timeout_s)


def next_wakeup(proj: Projection, now: datetime) -> datetime | None:
    """When time alone changes a decision: a direct lease expires, a cool-down ends,
    an assignment or a pending task runs out of time."""
    times = [
        h.expires_at
        for view in proj.resources.values()
        for h in view.holders.values()
        if h.task_id is None
    ]
    times += [t for t in proj.avoid.values() if t > now]
    times += [t for t in proj.set_aside.values() if t > now]
    for open_task in proj.tasks.values():
        task = open_task.task
        if proj.set_aside.get(task.task_id, now) > now:
            continue  # looked at again when set_aside ends (counted above)
        if task.state == "assigned" and open_task.assigned_at is not None:
            deadline = placement.not_started_by(task, open_task.assigned_at)
            if deadline is not None:
                times.append(deadline)
        elif task.state == "pending":
            until = _pending_until(open_task)
            if until is not None:
                times.append(until)
    return min(times, default=None)
