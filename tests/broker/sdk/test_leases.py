"""Leases through the agent's inbox: acquire, renew while held, release, and hear of a loss."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from contracts import AssignTask, LeaseAcquired, LeaseLost
from sdk import Task
from tests.broker.sdk.conftest import MakeAgent, Notify
from tests.support.standin import Observer, task_of

pytestmark = pytest.mark.broker


def gpu_job() -> AssignTask:
    return AssignTask(
        task_id=uuid4(), capability="gpu-job", attempt=1, fencing_token=1, timeout_s=30
    )


async def test_lease_is_renewed_while_held_and_released_after(
    make_agent: MakeAgent, observer: Observer, notify: Notify
) -> None:
    agent = make_agent()
    finish = asyncio.Event()

    @agent.capability("gpu-job")
    async def job(task: Task) -> int:
        async with task.lease("gpu", ttl_s=0.6) as lease:
            await finish.wait()
            lease.check()
            return lease.fencing_token

    await agent.start()
    assign = gpu_job()
    await notify("agent-1", assign)
    (ask,) = await observer.wait_for("AcquireLease")
    assert (ask.payload.resource, ask.payload.agent_id, ask.payload.ttl_s) == (
        "gpu",
        "agent-1",
        0.6,
    )
    lease_id = ask.payload.lease_id
    await notify(
        "agent-1",
        LeaseAcquired(
            resource="gpu",
            lease_id=lease_id,
            fencing_token=4,
            expires_at=datetime.now(UTC) + timedelta(seconds=0.6),
        ),
    )
    renewals = await observer.wait_for("RenewLease", count=2, timeout=5)
    assert {(r.payload.lease_id, r.payload.fencing_token) for r in renewals} == {(lease_id, 4)}
    finish.set()
    (done,) = await observer.wait_for("ReportTaskSucceeded", task_of(assign.task_id))
    assert done.payload.result == 4
    (release,) = await observer.wait_for("ReleaseLease")
    assert (release.payload.lease_id, release.payload.fencing_token) == (lease_id, 4)
    renewed = len(observer.of("RenewLease"))
    await asyncio.sleep(0.6)  # > 2 renew periods
    assert len(observer.of("RenewLease")) == renewed  # renewing stopped with the release


async def test_lost_lease_tells_the_handler_and_fails_the_attempt(
    make_agent: MakeAgent, observer: Observer, notify: Notify
) -> None:
    agent = make_agent()
    told: list[str] = []

    @agent.capability("gpu-job")
    async def job(task: Task) -> str:
        async with task.lease("gpu", ttl_s=30) as lease:
            told.append(await lease.wait_lost())
            return "finished without the lease"

    await agent.start()
    assign = gpu_job()
    await notify("agent-1", assign)
    (ask,) = await observer.wait_for("AcquireLease")
    lease_id = ask.payload.lease_id
    await notify(
        "agent-1",
        LeaseAcquired(
            resource="gpu",
            lease_id=lease_id,
            fencing_token=2,
            expires_at=datetime.now(UTC) + timedelta(seconds=30),
        ),
    )
    await notify(
        "agent-1", LeaseLost(resource="gpu", lease_id=lease_id, fencing_token=2, reason="expired")
    )
    (failed,) = await observer.wait_for("ReportTaskFailed", task_of(assign.task_id))
    assert told == ["expired"]
    assert failed.payload.error_type == "LeaseLostError"
    assert failed.payload.retryable is True
    assert not observer.of("ReleaseLease")  # nothing to give back: it is no longer ours
    assert not observer.of("ReportTaskSucceeded")


async def test_a_lease_lost_for_another_token_leaves_the_held_lease_alone(
    make_agent: MakeAgent, observer: Observer, notify: Notify
) -> None:
    # a RenewLease with a wrong token is answered with LeaseLost for that token (issue 14,
    # item 10): the lease the agent holds, with its own token, is still the allocator's grant
    agent = make_agent()
    finish = asyncio.Event()

    @agent.capability("gpu-job")
    async def job(task: Task) -> int:
        async with task.lease("gpu", ttl_s=0.6) as lease:
            await finish.wait()
            lease.check()
            return lease.fencing_token

    await agent.start()
    assign = gpu_job()
    await notify("agent-1", assign)
    (ask,) = await observer.wait_for("AcquireLease")
    lease_id = ask.payload.lease_id
    await notify(
        "agent-1",
        LeaseAcquired(
            resource="gpu",
            lease_id=lease_id,
            fencing_token=4,
            expires_at=datetime.now(UTC) + timedelta(seconds=0.6),
        ),
    )
    await notify(
        "agent-1",
        LeaseLost(resource="gpu", lease_id=lease_id, fencing_token=3, reason="not held"),
    )
    # renewing goes on after the stray loss, with the token it holds
    before = len(observer.of("RenewLease"))
    renewals = await observer.wait_for("RenewLease", count=before + 2, timeout=5)
    assert {r.payload.fencing_token for r in renewals} == {4}
    finish.set()
    (done,) = await observer.wait_for("ReportTaskSucceeded", task_of(assign.task_id))
    assert done.payload.result == 4
    (release,) = await observer.wait_for("ReleaseLease")
    assert (release.payload.lease_id, release.payload.fencing_token) == (lease_id, 4)
    assert not observer.of("ReportTaskFailed")
