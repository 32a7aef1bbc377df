"""An agent with its own broker user settles a notice it has no handler for, without a loop.

Such a user may not publish to the dead-letter exchange, so a notice the runtime tried to
dead-letter came back again and again until the inbox's delivery limit (issue 14, item 4).
"""

from __future__ import annotations

from uuid import uuid4

import pytest

from broker.connection import BrokerConnection
from contracts import AssignTask, TaskOutcome
from sdk import Task
from tests.broker.sdk.conftest import MakeAgent, Notify
from tests.support.rabbit_users import Users, users  # noqa: F401 - fixture reused
from tests.support.standin import Observer, task_of

pytestmark = pytest.mark.broker


async def test_a_notice_without_a_handler_is_settled_once(
    broker: BrokerConnection,
    users: Users,  # noqa: F811
    make_agent: MakeAgent,
    observer: Observer,
    notify: Notify,
) -> None:
    provisioned = await users.provision("stray")
    agent_id = provisioned.grant.agent_id
    agent = make_agent(agent_id, settings=users.settings_of(provisioned))

    @agent.capability("crawl")
    async def crawl(task: Task) -> str:
        return "done"

    await agent.start()
    # an outcome sent to this inbox, as a submit naming it once could
    await notify(agent_id, TaskOutcome(task_id=uuid4(), state="succeeded", attempt=1))
    assign = AssignTask(
        task_id=uuid4(), capability="crawl", attempt=1, fencing_token=1, timeout_s=30
    )
    await notify(agent_id, assign)
    await observer.wait_for("ReportTaskSucceeded", task_of(assign.task_id))
    await agent.stop(timeout=5)
    # whatever the agent left unsettled is back in its inbox now that it is gone
    channel = await broker.channel(confirms=False)
    try:
        inbox = await channel.declare_queue(
            broker.topology.inbox_queue(agent_id).name, passive=True
        )
        assert inbox.declaration_result.message_count == 0
    finally:
        await channel.close()
