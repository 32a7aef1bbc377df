"""Histories of real contract events, for the history check's tests.

Each fact is a contract model on the stream its owner writes it to, turned into a
record with ``new_event`` as the workers do. ``Recorder`` numbers positions and
stream versions as a store would (without one); ``through_store`` appends the
same records to a real store and reads back what it recorded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from contracts import (
    AgentJoined,
    AgentLost,
    Event,
    LeaseGranted,
    LeaseReleased,
    ResourceDeclared,
    TaskAssigned,
    TaskRequeued,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.allocator.projection import RESOURCE_PREFIX
from workers.registry import state as registry
from workers.runtime.messages import new_event
from workers.store.base import EventStore, Metadata, NewEvent, RecordedEvent
from workers.tasks import state as tasks

Fact = tuple[str, Event]  # (stream, event)
NOW = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Recorder:
    records: list[RecordedEvent] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)

    def record(
        self, fact: Fact, *, message_id: str | None = None, version: int | None = None
    ) -> RecordedEvent:
        """Record one fact; ``version`` overrides the stream's next version (to make holes)."""
        stream, event = fact
        new = new_event(event)
        self.versions[stream] += 1
        record = RecordedEvent(
            position=len(self.records) + 1,
            stream=stream,
            version=version if version is not None else self.versions[stream],
            id=new.id,
            type=new.type,
            schema_version=new.schema_version,
            data=dict(new.data),
            metadata={"message_id": message_id} if message_id else {},
            recorded_at=NOW,
        )
        self.records.append(record)
        return record


def history(*facts: Fact) -> list[RecordedEvent]:
    recorder = Recorder()
    for fact in facts:
        recorder.record(fact)
    return recorder.records


async def through_store(store: EventStore, records: list[RecordedEvent]) -> list[RecordedEvent]:
    """Append the records in order to a real store; what it recorded, read back."""
    for r in records:
        new = NewEvent(type=r.type, data=r.data, id=r.id, schema_version=r.schema_version)
        message_id = r.metadata.get("message_id")
        await store.append(r.stream, None, [new], metadata=Metadata(message_id=message_id))
    return await store.read_all(0, len(records) + 1)


# ---- facts, on their owners' streams ----


def submitted(task: UUID) -> Fact:
    return tasks.stream_of(task), TaskSubmitted(
        submitted_at=NOW, task_id=task, capability="x", ready=True
    )


def assigned(task: UUID, agent: str = "a", attempt: int = 1) -> Fact:
    event = TaskAssigned(
        task_id=task, agent_id=agent, attempt=attempt, fencing_token=attempt, reason="test"
    )
    return tasks.stream_of(task), event


def succeeded(task: UUID, agent: str = "a", attempt: int = 1) -> Fact:
    return tasks.stream_of(task), TaskSucceeded(task_id=task, agent_id=agent, attempt=attempt)


def requeued(task: UUID, attempt: int, reason: str) -> Fact:
    return tasks.stream_of(task), TaskRequeued(task_id=task, attempt=attempt, reason=reason)


def joined(agent: str, capacity: int = 1) -> Fact:
    event = AgentJoined(agent_id=agent, capabilities=("x",), capacity=capacity)
    return registry.stream_of(agent), event


def lost(agent: str) -> Fact:
    return registry.stream_of(agent), AgentLost(agent_id=agent, silent_for_s=9)


def declared(resource: str, capacity: int) -> Fact:
    return RESOURCE_PREFIX + resource, ResourceDeclared(resource=resource, capacity=capacity)


def granted(resource: str, lease: UUID, agent: str = "a") -> Fact:
    event = LeaseGranted(
        resource=resource,
        lease_id=lease,
        agent_id=agent,
        fencing_token=1,
        ttl_s=30.0,
        expires_at=NOW,
    )
    return RESOURCE_PREFIX + resource, event


def released(resource: str, lease: UUID, agent: str = "a") -> Fact:
    event = LeaseReleased(resource=resource, lease_id=lease, agent_id=agent, fencing_token=1)
    return RESOURCE_PREFIX + resource, event
