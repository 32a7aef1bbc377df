"""Agent registry messages: registration, heartbeats, departure, and the facts they record."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import Field, field_validator

from contracts.base import Command, Event
from contracts.fields import AgentId, Capability, Label, Seconds


def _sorted_unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


class RegisterAgent(Command):
    """Join the fleet, or update the manifest of an agent that is already in it."""

    route: ClassVar[str | None] = "registry"

    agent_id: AgentId
    capabilities: tuple[Capability, ...] = Field(min_length=1, max_length=256)
    capacity: int = Field(ge=1, le=10_000, description="tasks it runs at once")
    labels: dict[Label, Label] = Field(default_factory=dict, max_length=64)
    software_version: Label = "unknown"
    heartbeat_interval_s: Seconds = 5.0
    bundles: bool = Field(
        default=True,
        description="false: the workers send it every notice alone, never in a bundle",
    )

    _unique_capabilities = field_validator("capabilities")(_sorted_unique)


class Heartbeat(Command):
    """I am alive, and this is what I hold. Not recorded one event each."""

    route: ClassVar[str | None] = "registry"

    agent_id: AgentId
    load: int = Field(ge=0, description="tasks running now")
    running: tuple[UUID, ...] = Field(default=(), max_length=10_000)


class DeregisterAgent(Command):
    """Leave the fleet. With drain, running work finishes first and nothing new arrives."""

    route: ClassVar[str | None] = "registry"

    agent_id: AgentId
    drain: bool = True


class AgentJoined(Event):
    agent_id: AgentId
    capabilities: tuple[Capability, ...]
    capacity: int = Field(ge=1)
    labels: dict[str, str] = Field(default_factory=dict)
    software_version: str = "unknown"
    heartbeat_interval_s: float = 5.0
    bundles: bool = True


class AgentUpdated(Event):
    """A live agent registered again with a different manifest."""

    agent_id: AgentId
    capabilities: tuple[Capability, ...]
    capacity: int = Field(ge=1)
    labels: dict[str, str] = Field(default_factory=dict)
    software_version: str = "unknown"
    heartbeat_interval_s: float = 5.0
    bundles: bool = True


class AgentDraining(Event):
    """No new work is placed on it; what it runs may finish."""

    agent_id: AgentId


class AgentLeft(Event):
    agent_id: AgentId


class AgentLost(Event):
    """Silent past its window: its work is handed back, its leases expire."""

    agent_id: AgentId
    last_seen_at: datetime | None = None
    silent_for_s: float = Field(ge=0)
