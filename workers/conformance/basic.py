"""Scenarios of one task's life: assignment, progress, reports, StopTask, time-out, bundles.

Each returns its one-line reason when the history shows what it must, and
raises Unmet with the reason when it does not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from broker.publisher import Outgoing
from contracts import (
    BUNDLE_CONTENT_TYPE,
    Envelope,
    Event,
    StopTask,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskProgressed,
    TaskStarted,
    TaskSucceeded,
    encode,
)
from contracts.bundle import BUNDLE_COUNT, BundleMember, encode_bundle
from workers.conformance.context import Ctx
from workers.conformance.history import Unmet, has, of, single_end, summary

PROGRESS = [0.25, 0.5, 0.75]


async def assignment(ctx: Ctx) -> str:
    agent = await ctx.start_agent(1)
    nonce = ctx.nonce()
    task_id = await ctx.submit({"action": "succeed", "result": {"nonce": nonce}})
    end = single_end(await ctx.fleet.history.ended(task_id, 15), TaskSucceeded)
    if end.agent_id != agent.agent_id or end.attempt != 1:
        raise Unmet(f"succeeded by {end.agent_id} at attempt {end.attempt}, expected attempt 1")
    if end.result != {"nonce": nonce}:
        raise Unmet(f"result {end.result!r}, expected the payload's {{'nonce': {nonce!r}}}")
    return "assigned, succeeded once at attempt 1 with the payload's result"


async def progress(ctx: Ctx) -> str:
    await ctx.start_agent(1)
    nonce = ctx.nonce()
    # the wait keeps the test on the agent: progress sent together with the final report
    # can still be overtaken by it inside the task manager (reported, not judged here)
    payload = {"progress": PROGRESS, "seconds": 0.5, "action": "succeed", "result": nonce}
    task_id = await ctx.submit(payload)
    events = await ctx.fleet.history.ended(task_id, 15)
    single_end(events, TaskSucceeded)
    seen = [e.progress for e in of(events, TaskProgressed)]
    if seen != PROGRESS:
        raise Unmet(f"progress recorded {seen}, expected {PROGRESS} in order")
    last_progress = max(i for i, e in enumerate(events) if isinstance(e, TaskProgressed))
    if not any(isinstance(e, TaskSucceeded) for e in events[last_progress:]):
        raise Unmet(f"progress after the end ({summary(events)})")
    return f"progress {PROGRESS} recorded in order, then succeeded"


async def failure(ctx: Ctx) -> str:
    await ctx.start_agent(2)
    final_error, flaky_error = f"final {ctx.nonce()}", f"flaky {ctx.nonce()}"
    final = await ctx.submit(
        {"action": "fail", "error": final_error, "retryable": False}, max_attempts=3
    )
    flaky = await ctx.submit(
        {"action": "fail", "error": flaky_error, "retryable": True}, max_attempts=2
    )
    events = await ctx.fleet.history.ended(final, 15)
    dead = single_end(events, TaskDead)
    failed = of(events, TaskFailed)
    if len(failed) != 1 or failed[0].retryable or final_error not in failed[0].error:
        raise Unmet(
            f"a non-retryable failure recorded {[(f.error, f.retryable) for f in failed]}, "
            f"expected one TaskFailed, retryable false, error containing {final_error!r}"
        )
    if dead.attempt != 1:
        raise Unmet(f"a non-retryable failure was retried: dead at attempt {dead.attempt}")
    events = await ctx.fleet.history.ended(flaky, 15)
    dead = single_end(events, TaskDead)
    failed = of(events, TaskFailed)
    if [f.retryable for f in failed] != [True, True] or dead.attempt != 2:
        raise Unmet(
            f"a retryable failure with 2 attempts recorded {summary(events)}, "
            "expected two retryable TaskFailed, then TaskDead at attempt 2"
        )
    if not all(flaky_error in f.error for f in failed):
        raise Unmet(f"the error {failed[0].error!r} does not contain {flaky_error!r}")
    return "non-retryable: failed once, dead; retryable: failed, retried, dead at attempt 2"


async def _started(ctx: Ctx, task_id: uuid.UUID) -> None:
    await ctx.fleet.history.wait_task(task_id, has(TaskStarted), 15, "the task did not start")


def _no_result(events: Sequence[Event], what: str) -> None:
    if any(isinstance(e, TaskSucceeded) for e in events):
        raise Unmet(f"{what}, yet a success was recorded")


async def stop_task(ctx: Ctx) -> str:
    agent = await ctx.start_agent(1)
    task_id = await ctx.submit({"seconds": 30, "action": "succeed"}, timeout_s=60)
    await _started(ctx, task_id)
    await ctx.fleet.client.cancel(task_id, "conformance: StopTask")
    events = await ctx.fleet.history.ended(task_id, 10)
    single_end(events, TaskCancelled)
    await asyncio.sleep(1.0)  # the StopTask is in the agent's inbox before the next task
    await ctx.quick_task(agent, "after StopTask")
    events = await ctx.fleet.history.task(task_id)
    _no_result(events, "cancelled")
    return "cancelled while running; the agent stopped it and took the next task"


async def timeout(ctx: Ctx) -> str:
    agent = await ctx.start_agent(1)
    task_id = await ctx.submit({"seconds": 30, "action": "succeed"}, timeout_s=1.5)
    events = await ctx.fleet.history.ended(task_id, 15)
    single_end(events, TaskDead)
    _no_result(events, "timed out")
    failed = of(events, TaskFailed)
    if len(failed) != 1:
        raise Unmet(f"{len(failed)} failures recorded, expected the one time-out")
    await asyncio.sleep(1.0)
    await ctx.quick_task(agent, "after the time-out")
    by = "the task manager" if failed[0].error_type == "Timeout" else "the agent"
    return f"failed on time-out (recorded from {by}), dead; the agent took the next task"


async def bundle_bad_member(ctx: Ctx) -> str:
    agent = await ctx.start_agent(1)
    task_id = await ctx.submit({"seconds": 2, "action": "succeed"}, timeout_s=4)
    await _started(ctx, task_id)
    stop = Envelope.wrap(
        StopTask(task_id=task_id, attempt=1, reason="conformance: bundled StopTask"),
        sender="rally-conformance",
    )
    members = [
        BundleMember(b"{this member is not JSON", message_id=f"bad-{ctx.nonce()}"),
        BundleMember(encode(stop), message_id=str(stop.id), type="StopTask"),
    ]
    await ctx.fleet.publisher.publish_raw(
        Outgoing(
            exchange=ctx.fleet.conn.topology.inbox,
            routing_key=agent.agent_id,
            body=encode_bundle(members),
            message_id=f"{members[0].message_id}+1",
            headers={BUNDLE_COUNT: len(members)},
            content_type=BUNDLE_CONTENT_TYPE,
        )
    )
    events = await ctx.fleet.history.ended(task_id, 15)
    if any(isinstance(e, TaskSucceeded) for e in events):
        raise Unmet("the task succeeded: the bundle's good member (a StopTask) was not handled")
    single_end(events, TaskDead)
    await ctx.quick_task(agent, "after the bundle")
    return "bad member dropped, the StopTask beside it handled; the agent took the next task"
