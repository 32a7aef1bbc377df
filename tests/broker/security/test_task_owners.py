"""Tasks have owners, against the real broker and workers: identity, not envelope fields.

Two provisioned users, alice and mallory. Mallory writes alice's name where a
sender can write anything (the envelope's ``sender``, a known task id); the task
manager answers only the broker-vouched user, refuses what would touch alice's
task, and alice's inbox hears nothing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest

from broker import headers as h
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.publisher import Publisher
from broker.router import Incoming, Router
from contracts import (
    CancelTask,
    Event,
    Message,
    SubmitTask,
    TaskAccepted,
    TaskOutcome,
    TaskRefused,
    TaskSubmitted,
)
from tests.support.amqp import take
from tests.support.rabbit_users import Users
from workers.runtime.messages import load_event
from workers.runtime.services import Running
from workers.tasks.state import key_stream

pytestmark = pytest.mark.broker

NOBODY = "nobody-runs-this"  # no agent has it: tasks stay pending until cancelled


@dataclass
class User:
    """A provisioned user: its own connection to publish with, and its inbox (read here)."""

    name: str
    publisher: Publisher
    received: list[Message] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, payload: Message, *, sender: str | None = None) -> None:
        if sender is not None:  # the envelope's sender is whatever the publisher writes
            self.publisher.sender = sender
        await self.publisher.send(payload)

    def of(self, cls: type[Message]) -> list[Any]:
        return [m for m in self.received if isinstance(m, cls)]

    async def wait_for(self, cls: type[Message], timeout: float = 30.0) -> Any:
        async with asyncio.timeout(timeout):
            while not self.of(cls):
                self.changed.clear()
                await self.changed.wait()
        return self.of(cls)[0]


@contextlib.asynccontextmanager
async def user(users: Users, broker: BrokerConnection, role: str) -> AsyncIterator[User]:
    made = await users.provision(role)
    name = made.grant.agent_id
    conn = await BrokerConnection(users.settings_of(made), role=role).connect()
    me = User(name, await Publisher(conn, sender=name).start())

    async def on(incoming: Incoming[Any]) -> None:
        me.received.append(incoming.payload)
        me.changed.set()

    router = Router()
    for cls in (TaskAccepted, TaskOutcome, TaskRefused):
        router.add(cls, on)
    # its inbox, read with the test's (service) connection
    spec = broker.topology.inbox_queue(name)
    inbox = Consumer(broker, spec, router, me.publisher, worker="test", replica=name)
    await inbox.start()
    try:
        yield me
    finally:
        await inbox.stop(timeout=2)
        await conn.close()


async def history(fleet: Running, stream: str) -> list[Event]:
    store: Any = fleet.store
    return [load_event(record) for record in await store.read(stream)]


async def recorded(fleet: Running, task_id: UUID, count: int = 1) -> list[Event]:
    async with asyncio.timeout(30):
        while len(events := await history(fleet, f"task-{task_id}")) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return events


@pytest.fixture
async def alice_and_mallory(
    fleet: Running, users: Users, broker: BrokerConnection
) -> AsyncIterator[tuple[User, User]]:
    async with user(users, broker, "alice") as alice, user(users, broker, "mallory") as mallory:
        yield alice, mallory


async def test_another_users_name_in_the_envelope_buys_nothing(
    fleet: Running, alice_and_mallory: tuple[User, User], broker: BrokerConnection
) -> None:
    # one test, three cases: provisioning a user costs seconds of rabbitmqctl
    alice, mallory = alice_and_mallory
    await notices_go_to_the_broker_user_whatever_the_envelope_says(fleet, alice, mallory)
    await a_cancel_from_another_user_is_dead_lettered_and_changes_nothing(
        fleet, alice, mallory, broker
    )
    await a_submit_reusing_anothers_task_id_is_refused_and_never_answered_as_it(
        fleet, alice, mallory
    )
    assert alice.received == []


async def notices_go_to_the_broker_user_whatever_the_envelope_says(
    fleet: Running, alice: User, mallory: User
) -> None:
    submit = SubmitTask(capability=NOBODY)
    await mallory.send(submit, sender=alice.name)  # mallory claims to be alice
    (submitted,) = await recorded(fleet, submit.task_id)
    assert isinstance(submitted, TaskSubmitted)
    assert (submitted.owner, submitted.submitted_by) == (mallory.name, mallory.name)

    await mallory.send(CancelTask(task_id=submit.task_id), sender=alice.name)
    outcome = await mallory.wait_for(TaskOutcome)
    assert (outcome.task_id, outcome.state) == (submit.task_id, "cancelled")
    assert mallory.of(TaskAccepted) == []  # a new task needs no TaskAccepted
    assert alice.received == []


async def a_submit_reusing_anothers_task_id_is_refused_and_never_answered_as_it(
    fleet: Running, alice: User, mallory: User
) -> None:
    victim = SubmitTask(capability=NOBODY, payload="alice's", reply_to=alice.name)
    await alice.send(victim)
    await recorded(fleet, victim.task_id)

    # mallory's own task, ended, under its own key: the key it will pair with alice's task id
    own = SubmitTask(capability=NOBODY, payload="mallory's", idempotency_key="mk")
    await mallory.send(own)
    await recorded(fleet, own.task_id)
    await mallory.send(CancelTask(task_id=own.task_id))
    async with asyncio.timeout(30):
        while own.task_id not in {o.task_id for o in mallory.of(TaskOutcome)}:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    forged = own.model_copy(update={"task_id": victim.task_id})
    await mallory.send(forged, sender=alice.name)
    refused = await mallory.wait_for(TaskRefused)
    assert (refused.task_id, refused.reason) == (victim.task_id, "conflict")
    # and the plain replay of alice's submit by mallory: the same spec, another owner
    await mallory.send(victim.model_copy(update={"reply_to": None}), sender=alice.name)
    async with asyncio.timeout(30):
        while len(mallory.of(TaskRefused)) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert {r.reason for r in mallory.of(TaskRefused)} == {"conflict"}
    assert alice.received == []
    assert [type(e).__name__ for e in await history(fleet, f"task-{victim.task_id}")] == [
        "TaskSubmitted"
    ]
    (claim,) = await history(fleet, key_stream("mk"))  # the key still names mallory's task
    assert claim.task_id == own.task_id  # type: ignore[attr-defined]


async def a_cancel_from_another_user_is_dead_lettered_and_changes_nothing(
    fleet: Running, alice: User, mallory: User, broker: BrokerConnection
) -> None:
    victim = SubmitTask(capability=NOBODY)
    await alice.send(victim)
    await recorded(fleet, victim.task_id)

    await mallory.send(CancelTask(task_id=victim.task_id), sender=alice.name)
    (letter,) = await take(broker, f"{broker.topology.worker_queue('tasks')}.dlq", 1, timeout=30)
    assert letter.headers[h.DL_REASON] == "security"
    assert "may not cancel" in str(letter.headers[h.DL_ERROR])
    assert [type(e).__name__ for e in await history(fleet, f"task-{victim.task_id}")] == [
        "TaskSubmitted"
    ]
