"""Agents with their own broker users against the real workers (in this process).

An agent runs end to end under its own user; another agent that claims to be it is
refused by the workers — dead-lettered with reason ``security`` — and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from broker import headers as h
from broker.connection import BrokerConnection
from broker.deadletter import ORIGINAL_USER_ID
from broker.identity import REPLAY_OF
from broker.publisher import Publisher
from broker.settings import BrokerSettings
from contracts import (
    AcquireLease,
    DeregisterAgent,
    Envelope,
    Event,
    Heartbeat,
    RegisterAgent,
    ReportTaskSucceeded,
    TaskAssigned,
    TaskSucceeded,
    encode,
)
from sdk import Agent, Client, Task
from tests.support.amqp import Taken, depth, publish_bytes, take
from tests.support.rabbit_users import Users
from workers.dlq.archive import open_archive
from workers.dlq.parse import parse
from workers.dlq.replay import Replayer
from workers.dlq.transport import to_raw
from workers.runtime.messages import load_event
from workers.runtime.services import Running

pytestmark = pytest.mark.broker

HEARTBEAT_S = 2.0  # a loaded test machine must not make the victim look lost


@pytest.fixture
async def client(broker_settings: BrokerSettings, users: Users) -> AsyncIterator[Client]:
    async with Client(f"client-{users.run}", settings=broker_settings) as c:
        yield c


async def history(fleet: Running, stream: str) -> list[Event]:
    store: Any = fleet.store
    return [load_event(record) for record in await store.read(stream)]


async def types(fleet: Running, stream: str) -> list[str]:
    return [type(e).__name__ for e in await history(fleet, stream)]


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[Agent]:
    await agent.start()
    try:
        yield agent
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(agent.stop(timeout=1.0), 15)


async def echo(task: Task) -> dict[str, Any]:
    return {"echo": task.payload}


async def test_an_agent_with_its_own_user_registers_takes_work_and_reports(
    fleet: Running, users: Users, client: Client, broker: BrokerConnection
) -> None:
    me = await users.provision("worker")
    agent_id = me.grant.agent_id
    agent = Agent(agent_id, heartbeat_interval_s=HEARTBEAT_S, settings=users.settings_of(me))
    agent.add_capability("echo", echo)
    async with running(agent):
        assert agent.publisher.user_id == agent_id
        handle = await client.submit("echo", {"n": 1})
        assert await handle.result(timeout=60) == {"echo": {"n": 1}}
    task = await history(fleet, f"task-{handle.task_id}")
    assert [e.agent_id for e in task if isinstance(e, TaskAssigned | TaskSucceeded)] == [
        agent_id,
        agent_id,
    ]
    assert (await types(fleet, f"agent-{agent_id}"))[0] == "AgentJoined"
    for worker in ("registry", "tasks", "allocator"):
        assert await depth(broker, f"{broker.topology.worker_queue(worker)}.dlq") == 0


def security_letters(letters: list[Taken]) -> list[tuple[str | None, str]]:
    out = []
    for letter in letters:
        headers = letter.headers or {}
        assert headers[h.DL_REASON] == "security"
        out.append((letter.type, str(headers[h.DL_ERROR])))
    return sorted(out, key=lambda x: str(x[0]))


async def test_an_agent_acting_for_another_is_dead_lettered_and_the_victim_is_unaffected(
    fleet: Running, users: Users, client: Client, broker: BrokerConnection
) -> None:
    victim, attacker = await asyncio.gather(users.provision("victim"), users.provision("mallory"))
    victim_id, attacker_id = victim.grant.agent_id, attacker.grant.agent_id
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(task: Task) -> str:
        started.set()
        await release.wait()
        return "the victim's own result"

    agent = Agent(victim_id, heartbeat_interval_s=HEARTBEAT_S, settings=users.settings_of(victim))
    agent.add_capability("hold", hold)
    mallory = BrokerConnection(users.settings_of(attacker), role="attacker")
    async with mallory, running(agent):
        handle = await client.submit("hold", timeout_s=120)
        await asyncio.wait_for(started.wait(), 60)
        task_stream = f"task-{handle.task_id}"
        (assigned,) = [e for e in await history(fleet, task_stream) if isinstance(e, TaskAssigned)]
        assert assigned.agent_id == victim_id

        publisher = await Publisher(mallory, sender=attacker_id).start()
        # its own registration is accepted: what follows is refused for the claim, not the user
        await publisher.send(RegisterAgent(agent_id=attacker_id, capabilities=("x",), capacity=1))
        await publisher.send(Heartbeat(agent_id=victim_id, load=0))
        await publisher.send(
            ReportTaskSucceeded(
                task_id=handle.task_id,
                agent_id=victim_id,
                attempt=assigned.attempt,
                fencing_token=assigned.fencing_token,
                result="forged",
            )
        )
        await publisher.send(DeregisterAgent(agent_id=victim_id, drain=False))
        await publisher.send(AcquireLease(resource="gpu", agent_id=victim_id))

        topology = broker.topology
        wanted = {"registry": 2, "tasks": 1, "allocator": 1}
        taken = await asyncio.gather(
            *(
                take(broker, f"{topology.worker_queue(worker)}.dlq", count, timeout=30)
                for worker, count in wanted.items()
            )
        )
        dead = dict(zip(wanted, taken, strict=True))
        refused = f"broker user {attacker_id!r} may not act for agent {victim_id!r}"
        assert security_letters(dead["registry"]) == [
            ("DeregisterAgent", f"{refused} (DeregisterAgent): {WHY}"),
            ("Heartbeat", f"{refused} (Heartbeat): {WHY}"),
        ]
        assert security_letters(dead["tasks"]) == [
            ("ReportTaskSucceeded", f"{refused} (ReportTaskSucceeded): {WHY}")
        ]
        assert security_letters(dead["allocator"]) == [
            ("AcquireLease", f"{refused} (AcquireLease): {WHY}")
        ]
        for letters in dead.values():  # the dead letter names who sent it
            assert {(letter.headers or {})[ORIGINAL_USER_ID] for letter in letters} == {attacker_id}

        # an operator replays the forged report with the workers' own user: still the attacker's
        tasks_dlq = f"{topology.worker_queue('tasks')}.dlq"
        (again,) = await replayed(fleet, tasks_dlq, dead["tasks"][0])
        assert security_letters([again]) == [
            ("ReportTaskSucceeded", f"{refused} (ReportTaskSucceeded): {WHY}")
        ]
        assert (again.headers or {})[ORIGINAL_USER_ID] == attacker_id
        assert REPLAY_OF in (again.headers or {})

        joined: list[str] = []

        async def attacker_joined() -> bool:
            joined[:] = await types(fleet, f"agent-{attacker_id}")
            return joined == ["AgentJoined"]

        await eventually_async(attacker_joined)
        # the victim: still in the fleet, its task still its own and running
        assert await types(fleet, f"agent-{victim_id}") == ["AgentJoined"]
        assert await types(fleet, task_stream) == TASK_SO_FAR
        assert not agent.draining
        assert agent.running == (handle.task_id,)
        release.set()
        assert await handle.result(timeout=60) == "the victim's own result"
    done = [e for e in await history(fleet, task_stream) if isinstance(e, TaskSucceeded)]
    assert [(e.agent_id, e.result) for e in done] == [(victim_id, "the victim's own result")]


async def test_an_anonymous_message_gains_no_identity_from_a_header_or_a_replay(
    fleet: Running, broker: BrokerConnection
) -> None:
    ghost = f"ghost-{uuid4().hex[:8]}"
    claim = RegisterAgent(agent_id=ghost, capabilities=("x",), capacity=1)
    body = encode(Envelope.wrap(claim, sender=ghost))
    # no user_id property, and a header that names the agent it claims to be
    await publish_bytes(
        broker,
        broker.topology.commands,
        "registry.RegisterAgent",
        body,
        message_id=str(uuid4()),
        headers={ORIGINAL_USER_ID: ghost},
    )
    dlq = f"{broker.topology.worker_queue('registry')}.dlq"
    (letter,) = await take(broker, dlq, 1, timeout=30)
    why = f"a message without user_id may not act for agent {ghost!r} (RegisterAgent): {WHY}"
    assert security_letters([letter]) == [(None, why)]  # sent without a type property
    assert (letter.headers or {})[ORIGINAL_USER_ID] == ""  # anonymous, and it stays so
    (again,) = await replayed(fleet, dlq, letter)
    assert security_letters([again]) == [("RegisterAgent", why)]
    assert await types(fleet, f"agent-{ghost}") == []


async def replayed(fleet: Running, dlq: str, message: Taken) -> list[Taken]:
    """Replay a dead letter as `rally dlq replay` does; what lands in the DLQ next."""
    archive = open_archive("sqlite:///:memory:")
    await archive.start()
    try:
        settings = fleet.conn.settings
        letter = parse(
            to_raw(dlq, message), now=datetime.now(UTC), delivery_limit=settings.delivery_limit
        )
        await archive.add([letter])
        replayer = Replayer(archive, fleet.publisher, fleet.conn.topology, history=None, by="ops")
        report = await replayer.replay([letter])
        assert report.count("replayed") == 1, report
    finally:
        await archive.close()
    return await take(fleet.conn, dlq, 1, timeout=30)


WHY = "a broker user acts only for the agent whose id is its user name"
TASK_SO_FAR = ["TaskSubmitted", "TaskAssigned", "TaskStarted"]


async def eventually_async(check: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polling the store
            await asyncio.sleep(0.05)
