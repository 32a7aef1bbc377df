"""Leases, pure: the lease commands, leases that must end, agents waiting for a unit.

Each step adds events (with the stream's expected version) and effects to a
:class:`Plan`. Task leases are taken in ``planning.place``; these steps free
them when their task lets go.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import structlog

from broker.errors import Retry
from contracts import (
    AcquireLease,
    DeclareResource,
    LeaseAcquired,
    LeaseExpired,
    LeaseGranted,
    LeaseLost,
    LeaseReleased,
    LeaseRequested,
    ReleaseLease,
    RenewLease,
    ResourceDeclared,
)
from workers.allocator.plan import Plan, next_version, resource_stream
from workers.allocator.projection import ACTIVE, Holder, Projection
from workers.runtime.messages import Effect

log = structlog.get_logger(__name__)

LeaseCommand = DeclareResource | AcquireLease | RenewLease | ReleaseLease
HELD_RETRY_S = 5.0  # a command on a resource held at an unreadable event waits this long


# ---- 1. commands ----


def on_commands(proj: Projection, commands: list[LeaseCommand], now: datetime, plan: Plan) -> None:
    """Each command alone: one that raises is left out of the plan and named in ``plan.failed``."""
    for index, cmd in enumerate(commands):
        try:
            _on_command(proj, cmd, now, plan)
        except Exception as exc:  # the batch goes on; the consumer retries or dead-letters it
            log.warning("allocator.command_failed", type=type(cmd).__name__, error=repr(exc))
            plan.failed[index] = exc


def _on_command(proj: Projection, cmd: LeaseCommand, now: datetime, plan: Plan) -> None:
    held = proj.held.get(resource_stream(cmd.resource))
    if held is not None:
        raise Retry(f"resource {cmd.resource!r} is held: {held.reason}", after=HELD_RETRY_S)
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
                return  # a repeated request
            request = LeaseRequested(
                resource=cmd.resource,
                lease_id=cmd.lease_id,
                agent_id=cmd.agent_id,
                ttl_s=cmd.ttl_s,
            )
            plan.add(resource_stream(cmd.resource), view.version, request)
        case RenewLease():
            resource = proj.resources.get(cmd.resource)
            current = resource.holders.get(cmd.lease_id) if resource else None
            if current is None:
                # nobody holds it: whoever presented this token has lost it. The notice
                # carries the presented token, so it cannot touch a lease held under another.
                lost = LeaseLost(
                    resource=cmd.resource,
                    lease_id=cmd.lease_id,
                    fencing_token=cmd.fencing_token,
                    reason="not held: expired, released or never granted",
                )
                plan.direct.append(Effect(lost, to=cmd.agent_id))
            elif current.fencing_token != cmd.fencing_token or current.agent_id != cmd.agent_id:
                # a wrong token (or agent) for a lease someone holds: neither renewed nor
                # answered, so the real holder's lease is left alone
                log.warning(
                    "allocator.renew_refused",
                    resource=cmd.resource,
                    lease_id=str(cmd.lease_id),
                    agent_id=cmd.agent_id,
                    fencing_token=cmd.fencing_token,
                )
            else:
                current.expires_at = now + timedelta(seconds=current.ttl_s)
        case ReleaseLease():
            holder = _holder(proj, cmd.resource, cmd.lease_id, cmd.fencing_token)
            if (
                holder is not None
                and holder.agent_id == cmd.agent_id
                and holder.lease_id not in plan.ended
            ):
                _end(proj, plan, cmd.resource, holder, None)
        case _:
            raise TypeError(f"the allocator does not handle {type(cmd).__name__}")


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


# ---- 2. leases that must end ----


def settle_leases(proj: Projection, now: datetime, plan: Plan) -> None:
    for view in proj.resources.values():
        if resource_stream(view.name) in proj.held:
            continue  # its holders are not known for sure: end none
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
    if view is None or resource_stream(resource) in proj.held:
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
            token = next_version(plan, stream, view.version)
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
