"""Shared named resources and leases on them (stream "resource-<name>").

A lease's fencing token is the resource stream's version when it was granted,
so it only grows: a holder that was lost and comes back late carries a token
lower than the current holder's and its reports are refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID, uuid4

from pydantic import Field

from contracts.base import Command, Event, Notice
from contracts.fields import AgentId, FencingToken, ResourceName, Seconds


class DeclareResource(Command):
    route: ClassVar[str | None] = "allocator"

    resource: ResourceName
    capacity: int = Field(ge=1, le=1_000_000)


class AcquireLease(Command):
    """Ask for one unit of a resource; granted fairly (first come) when free."""

    route: ClassVar[str | None] = "allocator"

    resource: ResourceName
    agent_id: AgentId
    lease_id: UUID = Field(default_factory=uuid4)
    ttl_s: Seconds = 30.0


class RenewLease(Command):
    route: ClassVar[str | None] = "allocator"

    resource: ResourceName
    agent_id: AgentId
    lease_id: UUID
    fencing_token: FencingToken


class ReleaseLease(Command):
    route: ClassVar[str | None] = "allocator"

    resource: ResourceName
    agent_id: AgentId
    lease_id: UUID
    fencing_token: FencingToken


class ResourceDeclared(Event):
    resource: ResourceName
    capacity: int


class LeaseGranted(Event):
    resource: ResourceName
    lease_id: UUID
    agent_id: AgentId
    task_id: UUID | None = None
    fencing_token: FencingToken
    ttl_s: float
    expires_at: datetime


class LeaseReleased(Event):
    resource: ResourceName
    lease_id: UUID
    agent_id: AgentId
    task_id: UUID | None = None
    fencing_token: FencingToken


class LeaseExpired(Event):
    resource: ResourceName
    lease_id: UUID
    agent_id: AgentId
    task_id: UUID | None = None
    fencing_token: FencingToken
    reason: str


class LeaseAcquired(Notice):
    """To the agent that asked: the lease is yours until ``expires_at`` unless renewed."""

    resource: ResourceName
    lease_id: UUID
    fencing_token: FencingToken
    expires_at: datetime


class LeaseLost(Notice):
    """To the holder: the lease expired or was revoked; stop using the resource."""

    resource: ResourceName
    lease_id: UUID
    fencing_token: FencingToken
    reason: str


# ---- added for the allocator (workers/allocator) ----


class LeaseRequested(Event):
    """An agent waits for a unit of the resource; granted first come, first served.

    Recorded so the queue of waiters survives an allocator failover.
    """

    resource: ResourceName
    lease_id: UUID
    agent_id: AgentId
    ttl_s: float
