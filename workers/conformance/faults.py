"""Scenarios around faults: a stale token, a dropped connection, drain, a provisioned user."""

from __future__ import annotations

import asyncio
import signal
import time

from pydantic import JsonValue

from broker.access import NotProvisionable
from broker.inspect import queue_depths
from broker.publisher import Outgoing
from contracts import (
    AgentDraining,
    AgentJoined,
    AgentLeft,
    AgentLost,
    Event,
    ReportTaskSucceeded,
    TaskAssigned,
    TaskProgressed,
    TaskRequeued,
    TaskStarted,
    TaskSucceeded,
)
from workers.cli.provision import (
    CannotRun,
    Provisioned,
    ProvisionError,
    Rabbitmqctl,
    Step,
    provision,
)
from workers.conformance.context import Ctx, Launched, Skipped
from workers.conformance.fleet import Fleet
from workers.conformance.history import Unmet, has, of, single_end, summary

STALE_RESULT: JsonValue = {"stale": "a report with an old fencing token"}


def _index(events: list[Event], kind: type[Event], start: int = 0) -> int | None:
    return next((i for i in range(start, len(events)) if isinstance(events[i], kind)), None)


async def stale_token(ctx: Ctx) -> str:
    agent = await ctx.start_agent(1)
    history = ctx.fleet.history
    task_id = await ctx.submit(
        {"seconds": 3, "action": "succeed", "result": "fresh"}, max_attempts=3
    )
    events = await history.wait_task(task_id, has(TaskStarted), 15, "the task did not start")
    first = of(events, TaskAssigned)[0]
    agent.process.signal(signal.SIGSTOP)  # a frozen agent: a long GC pause, a stopped VM
    try:
        await history.wait_agent(
            agent.agent_id, has(AgentLost), 15, "the registry did not count the frozen agent lost"
        )
        await history.wait_task(task_id, has(TaskRequeued), 10, "the task was not requeued")
        # what a late holder would send: the old attempt's token, by the kit itself, so
        # there is a stale report to refuse even if the agent's own is slower
        await ctx.fleet.publisher.send(
            ReportTaskSucceeded(
                task_id=task_id,
                agent_id=agent.agent_id,
                attempt=first.attempt,
                fencing_token=first.fencing_token,
                result=STALE_RESULT,
            )
        )
    finally:
        agent.process.signal(signal.SIGCONT)
    events = await history.ended(task_id, 25)
    end = single_end(events, TaskSucceeded)
    requeued = _index(events, TaskRequeued)
    assert requeued is not None
    late = [
        e
        for e in events[requeued:]
        if isinstance(e, TaskStarted | TaskProgressed | TaskSucceeded)
        and e.attempt == first.attempt
    ]
    if late:
        raise Unmet(f"a report of the old attempt was recorded after the requeue: {late[0]!r}")
    if end.attempt <= first.attempt or end.result == STALE_RESULT:
        raise Unmet(f"succeeded at attempt {end.attempt} with {end.result!r}")
    agent_events = await history.agent(agent.agent_id)
    lost = _index(agent_events, AgentLost)
    if lost is None or _index(agent_events, AgentJoined, lost) is None:
        raise Unmet("the agent never rejoined after it was lost")
    return (
        f"stale reports of attempt {first.attempt} refused; the agent rejoined and "
        f"attempt {end.attempt} succeeded once"
    )


async def connection_drop(ctx: Ctx) -> str:
    agent = await ctx.start_agent(1)
    history = ctx.fleet.history
    task_id = await ctx.submit({"seconds": 1.5, "action": "succeed", "result": "once"})
    await history.wait_task(task_id, has(TaskStarted), 15, "the task did not start")
    agent.proxy.freeze_downstream()  # its report gets through, the confirm does not
    try:
        await history.wait_task(task_id, has(TaskSucceeded), 3, "")
        through = "its report reached the broker, the confirm did not"
    except Unmet:
        through = "its report went after the reconnect"
    connections = agent.proxy.accepted
    agent.proxy.cut()
    await asyncio.sleep(1.0)
    agent.proxy.restore()
    events = await history.ended(task_id, 20)
    end = single_end(events, TaskSucceeded)
    if end.result != "once":
        raise Unmet(f"result {end.result!r}")
    await _back(ctx, agent, connections)
    await ctx.quick_task(agent, "after the reconnect", timeout=25)
    return f"cut mid-report ({through}): ended exactly once; the next task succeeded"


async def _back(ctx: Ctx, agent: Launched, connections: int) -> None:
    """The agent connected again and, if the registry counted it lost meanwhile, rejoined."""
    deadline = time.monotonic() + 20
    while True:
        events = await ctx.fleet.history.agent(agent.agent_id)
        lost = _index(events, AgentLost)
        rejoined = lost is None or _index(events, AgentJoined, lost) is not None
        if agent.proxy.accepted > connections and rejoined:
            return
        if time.monotonic() > deadline:
            raise Unmet("the agent did not connect again (and register) within 20s of the cut")
        await asyncio.sleep(0.1)


async def drain(ctx: Ctx) -> str:
    agent = await ctx.start_agent(2)
    history = ctx.fleet.history
    tasks = [await ctx.submit({"seconds": 2, "action": "succeed", "result": i}) for i in (1, 2)]
    for task_id in tasks:
        await history.wait_task(task_id, has(TaskStarted), 15, "a task did not start")
    agent.process.signal(signal.SIGTERM)
    for task_id in tasks:
        events = await history.ended(task_id, 15)
        end = single_end(events, TaskSucceeded)
        if end.attempt != 1 or of(events, TaskRequeued):
            raise Unmet(f"a running task was handed back during the drain ({summary(events)})")
    events = await history.wait_agent(
        agent.agent_id, has(AgentLeft), 15, "the agent was not recorded left"
    )
    draining, left = _index(events, AgentDraining), _index(events, AgentLeft)
    if draining is None or left is None or draining > left:
        raise Unmet(f"expected AgentDraining then AgentLeft ({summary(events)})")
    deadline = time.monotonic() + 10
    while agent.process.alive():
        if time.monotonic() > deadline:
            raise Unmet("recorded left, but the agent's processes did not end within 10s")
        await asyncio.sleep(0.1)
    return "both running tasks succeeded at attempt 1, then draining, left, exited"


def start_provisioning(fleet: Fleet) -> asyncio.Task[tuple[str, Provisioned]]:
    """Provision the user ahead (rabbitmqctl takes seconds a call), while other scenarios run."""
    agent_id = fleet.new_agent_id("prov")

    async def made() -> tuple[str, Provisioned]:
        return agent_id, await provision(agent_id, settings=fleet.settings)

    return asyncio.create_task(made(), name="conformance-provision")


async def provisioned(ctx: Ctx) -> str:
    fleet = ctx.fleet
    ahead = fleet.provisioning or start_provisioning(fleet)
    try:
        agent_id, made = await ahead
    except (ProvisionError, CannotRun, NotProvisionable) as exc:
        raise Skipped(f"cannot provision a broker user here: {exc}") from None
    if not made.applied:
        raise Skipped(f"cannot provision a broker user here: {made.not_applied_because}")
    try:
        return await _as_provisioned(ctx, agent_id, made.url)
    finally:
        for launched in ctx.launched:
            launched.process.kill()
        # removed while the fleet stops; fleet.close() waits for it
        fleet.cleanups.append(
            asyncio.create_task(Rabbitmqctl().apply(Step(("delete_user", made.grant.user))))
        )


async def _as_provisioned(ctx: Ctx, agent_id: str, url: str) -> str:
    fleet = ctx.fleet
    agent = await ctx.start_agent(1, amqp_url=url, agent_id=agent_id)
    spec = fleet.conn.topology.inbox_queue(agent_id)
    # all inboxes share one DLQ: count this agent's letter on top of what is there already
    inbox, dlq = spec.name, spec.dlq
    before = (await queue_depths(fleet.conn, [dlq])).get(dlq, 0)
    await fleet.publisher.publish_raw(
        Outgoing(fleet.conn.topology.inbox, agent_id, b"{not JSON", message_id=ctx.nonce())
    )
    nonce = ctx.nonce()
    payload = {"progress": [0.5], "seconds": 0.5, "action": "succeed", "result": nonce}
    task_id = await ctx.submit(payload)
    events = await fleet.history.ended(task_id, 15)
    end = single_end(events, TaskSucceeded)
    if end.result != nonce or [e.progress for e in of(events, TaskProgressed)] != [0.5]:
        raise Unmet(f"with its own user: {summary(events)}, result {end.result!r}")
    deadline = time.monotonic() + 10
    while True:
        depths = await queue_depths(fleet.conn, [inbox, dlq])
        if depths.get(dlq) == before + 1 and depths.get(inbox) == 0:
            break
        if time.monotonic() > deadline or not agent.process.alive():
            raise Unmet(
                f"the bad delivery was not dead-lettered once to {dlq} (depths {depths}, "
                f"{before} there before): reject it without requeue"
            )
        await asyncio.sleep(0.2)
    await ctx.quick_task(agent, "with its own user")
    return "with its own broker user: progress and success; a bad delivery rejected to its DLQ"
