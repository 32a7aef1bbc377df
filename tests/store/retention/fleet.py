"""Task histories of real contract events, appended as the task manager appends them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from contracts import (
    DependentAdded,
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskKeyClaimed,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.runtime.messages import new_event
from workers.store import Metadata, OutboxMessage, Publishes, StreamAppend
from workers.store.postgres import PostgresEventStore
from workers.store.sqlite import SqliteEventStore
from workers.tasks.state import key_stream, stream_of

Store = SqliteEventStore | PostgresEventStore


def nothing_published(_category: str, _type: str) -> bool:
    """No outbox row per event: as if the relay had published them all."""
    return False


NO_OUTBOX: Publishes = nothing_published


async def record(
    store: Store,
    task_id: UUID,
    *events: Event,
    key: str | None = None,
    also: tuple[tuple[UUID, Event], ...] = (),
    outbox: tuple[OutboxMessage, ...] = (),
) -> str:
    """Append like a handler: one message id, used as the idempotency key; its id."""
    message_id = str(uuid.uuid4())
    appends = [StreamAppend(stream_of(task_id), None, [new_event(e) for e in events])]
    appends += [StreamAppend(stream_of(t), None, [new_event(e)]) for t, e in also]
    if key is not None:
        claim = TaskKeyClaimed(idempotency_key=key, task_id=task_id)
        appends.append(StreamAppend(key_stream(key), 0, [new_event(claim)]))
    await store.append_many(
        appends,
        metadata=Metadata(message_id=message_id, worker="tasks"),
        idempotency_key=message_id,
        outbox=outbox,
    )
    return message_id


def submitted(
    task_id: UUID, *, key: str | None = None, depends_on: tuple[UUID, ...] = ()
) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        capability="echo",
        payload={"text": "x" * 600},
        idempotency_key=key,
        depends_on=depends_on,
        ready=not depends_on,
        submitted_at=datetime.now(UTC),
    )


async def submit(
    store: Store, *, key: str | None = None, depends_on: tuple[UUID, ...] = ()
) -> UUID:
    task_id = uuid.uuid4()
    also = tuple((d, DependentAdded(task_id=d, dependent=task_id)) for d in depends_on)
    await record(
        store, task_id, submitted(task_id, key=key, depends_on=depends_on), key=key, also=also
    )
    return task_id


async def run(store: Store, task_id: UUID, *, timer: bool = False) -> None:
    await record(
        store,
        task_id,
        TaskAssigned(task_id=task_id, agent_id="a1", attempt=1, fencing_token=1, reason="test"),
    )
    deadline = datetime.now(UTC) + timedelta(days=30)
    timers = (
        OutboxMessage(
            exchange="rally.commands",
            routing_key="tasks.timer",
            body=b"{}",
            message_id=str(uuid.uuid4()),
            not_before=deadline,
            timer_of=stream_of(task_id),
        ),
    )
    await record(
        store,
        task_id,
        TaskStarted(task_id=task_id, agent_id="a1", attempt=1, deadline=deadline),
        outbox=timers if timer else (),
    )


async def end(store: Store, task_id: UUID, how: str = "succeeded") -> str:
    ending: Event
    if how == "succeeded":
        ending = TaskSucceeded(task_id=task_id, agent_id="a1", attempt=1, result={"ok": 1})
    elif how == "cancelled":
        ending = TaskCancelled(task_id=task_id, reason="test")
    else:
        ending = TaskDead(task_id=task_id, attempt=1, error="boom")
    return await record(store, task_id, ending)
