"""An agent whose broker connection is lost mid-task still delivers its result exactly once.

The agent reaches RabbitMQ through a TCP proxy the test controls; the
observer sees the commands exchange over its own, direct connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from broker.settings import BrokerSettings
from contracts import AssignTask
from sdk import Agent, Task
from tests.broker.sdk.conftest import MakeAgent, Notify
from tests.support.standin import Observer, task_of
from workers.conformance.proxy import FaultProxy

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture
async def proxy(sdk_settings: BrokerSettings) -> AsyncIterator[FaultProxy]:
    p = await FaultProxy(sdk_settings.amqp_url).start()
    yield p
    await p.close()


Gated = tuple[Agent, asyncio.Event]


@pytest.fixture
def gated_agent(proxy: FaultProxy, make_agent: MakeAgent, sdk_settings: BrokerSettings) -> Gated:
    """An agent behind the proxy (set up after it, so it stops while the link is still up)."""
    settings = sdk_settings.model_copy(update={"amqp_url": proxy.url()})
    agent = make_agent("agent-cut", settings=settings)
    release = asyncio.Event()

    @agent.capability("work")
    async def work(task: Task) -> dict[str, int]:
        await release.wait()
        return {"pages": 3, "token": task.fencing_token}

    return agent, release


def succeeded_ids(observer: Observer) -> list[str]:
    return [
        mid
        for mid, e in zip(observer.message_ids, observer.seen, strict=True)
        if e.type == "ReportTaskSucceeded"
    ]


async def start_task(agent: Agent, observer: Observer, notify: Notify, token: int) -> AssignTask:
    assign = AssignTask(
        task_id=uuid4(), capability="work", attempt=1, fencing_token=token, timeout_s=60
    )
    await notify(agent.agent_id, assign)
    await observer.wait_for("ReportTaskStarted", task_of(assign.task_id))
    return assign


async def test_result_finished_while_disconnected_is_delivered_after_reconnect(
    gated_agent: Gated, observer: Observer, notify: Notify, proxy: FaultProxy
) -> None:
    agent, release = gated_agent
    await agent.start()
    assign = await start_task(agent, observer, notify, token=5)

    proxy.cut()
    release.set()  # the handler finishes with no broker to report to
    await asyncio.sleep(1.0)
    assert not observer.of("ReportTaskSucceeded")  # held back, not lost...
    proxy.restore()
    (done,) = await observer.wait_for("ReportTaskSucceeded", task_of(assign.task_id), timeout=30)
    assert done.payload.result == {"pages": 3, "token": 5}
    assert (done.payload.attempt, done.payload.fencing_token) == (1, 5)
    # the agent registers again after the reconnect (the registry may have counted it lost)
    await observer.wait_for("RegisterAgent", count=2)
    await asyncio.sleep(0.5)  # room for any stray copy
    assert len(succeeded_ids(observer)) == 1
    # and it goes on working (the gate is open: the task is done at once, so its final
    # report stands for its start)
    again = AssignTask(task_id=uuid4(), capability="work", attempt=1, fencing_token=6, timeout_s=60)
    await notify(agent.agent_id, again)
    await observer.wait_for("ReportTaskSucceeded", task_of(again.task_id))
    assert not observer.of("ReportTaskStarted", task_of(again.task_id))


async def test_report_whose_confirm_is_lost_is_resent_with_the_same_id(
    gated_agent: Gated, observer: Observer, notify: Notify, proxy: FaultProxy
) -> None:
    agent, release = gated_agent
    await agent.start()
    assign = await start_task(agent, observer, notify, token=9)

    proxy.freeze_downstream()  # the broker gets the report, the agent never hears the confirm
    release.set()
    await observer.wait_for("ReportTaskSucceeded", task_of(assign.task_id))
    proxy.cut()
    proxy.restore()
    # the agent could not know its report arrived: it publishes the same envelope again
    copies = await observer.wait_for(
        "ReportTaskSucceeded", task_of(assign.task_id), count=2, timeout=30
    )
    assert copies[0] == copies[1]
    ids = succeeded_ids(observer)
    assert len(ids) == 2
    assert len(set(ids)) == 1
    assert proxy.accepted >= 2
