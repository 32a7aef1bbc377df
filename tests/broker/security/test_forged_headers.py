"""Issue 14, cases 2 and 3: headers that carry trust are the workers' to set, never a sender's.

Raw AMQP publishers against the real workers (in this process). A bundle member's own
headers cannot name another user (anonymous or as a provisioned agent), nor buy a parking
that comes back under the workers' user; a due-at far in the future is dead-lettered with
its reason instead of circling the delay queues.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import uuid4

import pytest

from broker import headers as h
from broker.connection import BrokerConnection
from contracts import (
    BUNDLE_CONTENT_TYPE,
    BundleMember,
    DeclareResource,
    Envelope,
    Message,
    RegisterAgent,
    SubmitTask,
    encode,
    encode_bundle,
)
from tests.support.amqp import Taken, publish_bytes, take
from tests.support.rabbit_users import Users
from workers.runtime.messages import load_event
from workers.runtime.services import Running

pytestmark = pytest.mark.broker


async def types(fleet: Running, stream: str) -> list[str]:
    store: Any = fleet.store
    return [type(load_event(r)).__name__ for r in await store.read(stream)]


def member(payload: Message, headers: dict[str, Any]) -> tuple[BundleMember, str]:
    envelope = Envelope.wrap(payload, sender="mallory")
    body = encode(envelope)
    return BundleMember(body, str(envelope.id), envelope.type, str(envelope.id), headers), str(
        envelope.id
    )


async def publish_bundle(
    conn: BrokerConnection, routing_key: str, members: list[BundleMember], **props: Any
) -> None:
    await publish_bytes(
        conn,
        conn.topology.commands,
        routing_key,
        encode_bundle(members),
        content_type=BUNDLE_CONTENT_TYPE,
        **props,
    )


def soon_ms(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


def reason(letter: Taken) -> str:
    return str((letter.headers or {}).get(h.DL_REASON))


async def test_an_anonymous_bundle_member_cannot_borrow_a_service_identity(
    fleet: Running, broker: BrokerConnection
) -> None:
    # before: parked for its due-at, re-published under the workers' user, and the forged
    # original user ("guest", a service user) was then trusted: the resource was declared
    resource = f"gpu-{uuid4().hex[:6]}"
    forged = {h.ORIGINAL_USER_ID: "guest", h.DUE_AT: soon_ms(0.3), h.ATTEMPT: 1}
    claim, _ = member(DeclareResource(resource=resource, capacity=4), forged)
    await publish_bundle(broker, "allocator.DeclareResource", [claim])  # no user_id: anonymous
    (letter,) = await take(
        broker, f"{broker.topology.worker_queue('allocator')}.dlq", 1, timeout=30
    )
    assert reason(letter) == "security"
    assert "a message without user_id may not send DeclareResource" in str(
        letter.headers[h.DL_ERROR]
    )
    assert letter.headers[h.ORIGINAL_USER_ID] == ""  # still anonymous
    assert await types(fleet, f"resource-{resource}") == []


async def test_an_agent_users_bundle_member_cannot_claim_another_user(
    fleet: Running, broker: BrokerConnection, users: Users
) -> None:
    attacker = await users.provision("mallory")
    attacker_id = attacker.grant.agent_id
    victim = f"victim-{uuid4().hex[:6]}"
    forged = {h.ORIGINAL_USER_ID: victim, h.DUE_AT: soon_ms(0.3), h.REPLAY_OF: "x"}
    claim, _ = member(RegisterAgent(agent_id=victim, capabilities=("x",), capacity=1), forged)
    mallory = BrokerConnection(users.settings_of(attacker), role="attacker")
    async with mallory:
        await publish_bundle(mallory, "registry.RegisterAgent", [claim], user_id=attacker_id)
    (letter,) = await take(broker, f"{broker.topology.worker_queue('registry')}.dlq", 1, timeout=30)
    assert reason(letter) == "security"
    assert f"broker user {attacker_id!r} may not act for agent {victim!r}" in str(
        letter.headers[h.DL_ERROR]
    )
    assert letter.headers[h.ORIGINAL_USER_ID] == attacker_id
    assert h.REPLAY_OF not in letter.headers  # the forged replay mark went at the door
    assert await types(fleet, f"agent-{victim}") == []


async def test_a_due_at_past_the_retry_horizon_is_dead_lettered_not_circled(
    fleet: Running, broker: BrokerConnection
) -> None:
    # before: the copy hopped the delay tiers every 60 s for ever, never decoded, no log line
    task = SubmitTask(capability="work")
    body = encode(Envelope.wrap(task, sender="ops"))
    day = soon_ms(24 * 3600)
    # a service user's copy: its due-at is read, and refused for being past the horizon
    await publish_bytes(
        broker,
        broker.topology.commands,
        "tasks.SubmitTask",
        body,
        message_id=str(uuid4()),
        user_id="guest",
        headers={h.DUE_AT: day},
    )
    (letter,) = await take(broker, f"{broker.topology.worker_queue('tasks')}.dlq", 1, timeout=30)
    assert reason(letter) == "retry_horizon"
    assert "past the retry horizon" in str(letter.headers[h.DL_ERROR])
    assert await types(fleet, f"task-{task.task_id}") == []


async def test_an_anonymous_due_at_is_ignored_and_the_message_handled_now(
    fleet: Running, broker: BrokerConnection
) -> None:
    task = SubmitTask(capability="work")
    body = encode(Envelope.wrap(task, sender="anyone"))
    await publish_bytes(
        broker,
        broker.topology.commands,
        "tasks.SubmitTask",
        body,
        message_id=str(uuid4()),
        headers={h.DUE_AT: soon_ms(24 * 3600), h.ATTEMPT: -50},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not await types(fleet, f"task-{task.task_id}"):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert (await types(fleet, f"task-{task.task_id}"))[:1] == ["TaskSubmitted"]
