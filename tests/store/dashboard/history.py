"""Recorded events built by hand, for the projection and view tests (no store, no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from contracts import (
    AgentJoined,
    AgentLeft,
    AgentLost,
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskProgressed,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.store.base import RecordedEvent

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class History:
    """Appends events to streams in memory, numbering positions and versions like a store."""

    def __init__(self, start: datetime = T0) -> None:
        self.records: list[RecordedEvent] = []
        self.versions: dict[str, int] = {}
        self.now = start

    def at(self, seconds: float) -> History:
        self.now = T0 + timedelta(seconds=seconds)
        return self

    def add(self, stream: str, event: Event, **overrides: Any) -> RecordedEvent:
        version = self.versions.get(stream, 0) + 1
        self.versions[stream] = version
        record = RecordedEvent(
            position=len(self.records) + 1,
            stream=stream,
            version=version,
            id=uuid4(),
            type=overrides.pop("type", event.type_name()),
            schema_version=event.version,
            data=overrides.pop("data", event.model_dump(mode="json")),
            metadata={},
            recorded_at=self.now,
        )
        self.records.append(record)
        return record

    # ---- agents ----
    def join(
        self, agent_id: str, capacity: int = 2, capabilities: tuple[str, ...] = ("echo",)
    ) -> None:
        self.add(
            f"agent-{agent_id}",
            AgentJoined(agent_id=agent_id, capabilities=capabilities, capacity=capacity),
        )

    def lose(self, agent_id: str) -> None:
        self.add(
            f"agent-{agent_id}",
            AgentLost(agent_id=agent_id, last_seen_at=self.now, silent_for_s=3.0),
        )

    def leave(self, agent_id: str) -> None:
        self.add(f"agent-{agent_id}", AgentLeft(agent_id=agent_id))

    # ---- tasks ----
    def submit(
        self, capability: str = "echo", payload: Any = None, task_id: UUID | None = None
    ) -> UUID:
        task_id = task_id or uuid4()
        self.add(
            f"task-{task_id}",
            TaskSubmitted(
                submitted_at=datetime.now(UTC),
                task_id=task_id,
                capability=capability,
                payload=payload,
                ready=True,
            ),
        )
        return task_id

    def step(self, task_id: UUID, what: str, agent_id: str = "a1", attempt: int = 1) -> None:
        """One lifecycle step of a task, named as the tasks worker would record it."""
        events: dict[str, Event] = {
            "assign": TaskAssigned(
                task_id=task_id,
                agent_id=agent_id,
                attempt=attempt,
                fencing_token=attempt,
                reason="least loaded",
            ),
            "start": TaskStarted(
                task_id=task_id,
                agent_id=agent_id,
                attempt=attempt,
                deadline=self.now + timedelta(seconds=30),
            ),
            "progress": TaskProgressed(
                task_id=task_id, agent_id=agent_id, attempt=attempt, progress=0.5
            ),
            "succeed": TaskSucceeded(task_id=task_id, agent_id=agent_id, attempt=attempt),
            "fail": TaskFailed(task_id=task_id, agent_id=agent_id, attempt=attempt, error="boom"),
            "retry": TaskRetryScheduled(
                task_id=task_id,
                attempt=attempt + 1,
                delay_s=0.1,
                not_before=self.now,
                reason="boom",
            ),
            "requeue": TaskRequeued(
                task_id=task_id, attempt=attempt + 1, reason="agent lost", agent_id=None
            ),
            "cancel": TaskCancelled(task_id=task_id, reason="by request", agent_id=agent_id),
            "die": TaskDead(task_id=task_id, attempt=attempt, error="out of attempts"),
        }
        self.add(f"task-{task_id}", events[what])


class HistoryStore:
    """The hand-built history as the event store a read-model runner follows (reads only)."""

    def __init__(self, history: History) -> None:
        self.history = history

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, stream_prefix: str | None = None
    ) -> list[RecordedEvent]:
        found = [
            r
            for r in self.history.records
            if r.position > from_position and r.stream.startswith(stream_prefix or "")
        ]
        return found[:limit]

    async def last_position(self) -> int:
        return len(self.history.records)

    async def read(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        return [r for r in self.history.records if r.stream == stream and r.version >= from_version]
