"""An agent that registers ``bundles: false`` gets every notice alone, whatever RALLY_BUNDLE_MAX.

Real broker and workers: two agents take the same burst of assignments, one placed in
a single allocator decision; the inbox of the one that said no bundles holds single
messages only, while the other's (the control) shows the burst did go out bundled.
"""

from __future__ import annotations

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_for_others
from broker.publisher import Publisher
from contracts import RegisterAgent, SubmitTask
from tests.support.amqp import Taken, take
from tests.support.history import History
from workers.runtime.services import Running

pytestmark = pytest.mark.broker

BURST = 40


async def burst_to(
    broker: BrokerConnection, publisher: Publisher, history: History, agent_id: str, bundles: bool
) -> list[Taken]:
    spec = broker.topology.inbox_queue(agent_id)
    broker.test_queues += [spec.name, spec.dlq]  # type: ignore[attr-defined]
    await declare_for_others(broker, spec)
    capability = f"cap-{agent_id}"
    await publisher.send(
        RegisterAgent(
            agent_id=agent_id,
            capabilities=(capability,),
            capacity=BURST,
            heartbeat_interval_s=60,
            bundles=bundles,
        )
    )

    async def joined() -> bool:
        return "AgentJoined" in await history.types(f"agent-{agent_id}")

    await history.wait(joined)
    # submitted before anything can place them, then placed together
    submits = [SubmitTask(capability=capability, payload={"n": n}) for n in range(BURST)]
    for submit in submits:
        await publisher.send(submit)
    return await take(broker, spec.name, BURST, timeout=30)


async def test_an_agent_that_takes_no_bundles_gets_single_messages(
    broker: BrokerConnection, fleet: Running, publisher: Publisher
) -> None:
    history = History(fleet)
    assert broker.settings.bundle_max > 1  # bundling is on for the workers
    solo = await burst_to(broker, publisher, history, "solo", bundles=False)
    assert len(solo) == BURST
    assert {t.type for t in solo} == {"AssignTask"}
    assert not any(t.bundled for t in solo)
    control = await burst_to(broker, publisher, history, "duo", bundles=True)
    assert len(control) == BURST
    assert any(t.bundled for t in control)  # the same burst is bundled for anyone else
