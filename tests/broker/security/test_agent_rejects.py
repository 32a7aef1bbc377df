"""A provisioned agent settles a bad delivery within its rights: reject, no requeue.

Its user may not publish to the dead-letter exchange, so the SDK rejects the delivery and
the inbox's own x-dead-letter-exchange moves it to ``ns.inbox.<id>.dlq``; the DLQ tools
read the broker's x-death entry. A bundle goes there whole only if every member is bad;
otherwise its good members are handled, the bad ones logged and dropped. The agent's
channel stays open throughout: it goes on taking notices.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from broker.connection import BrokerConnection
from broker.declare import declare_for_others
from contracts import BUNDLE_CONTENT_TYPE, BundleMember, Envelope, StopTask, encode, encode_bundle
from sdk import Agent, Task
from tests.support.amqp import depth, eventually, publish_bytes, take
from tests.support.rabbit_users import Users
from workers.dlq.parse import RawDeadLetter, parse

pytestmark = pytest.mark.broker


def stop_notice() -> bytes:
    return encode(Envelope.wrap(StopTask(task_id=uuid4(), attempt=1, reason="x"), sender="t"))


def member(body: bytes) -> BundleMember:
    return BundleMember(body=body, message_id=str(uuid4()), type="StopTask")


async def test_a_provisioned_agent_rejects_bad_deliveries_to_its_inbox_dlq(
    users: Users, broker: BrokerConnection
) -> None:
    made = await users.provision("rej")
    registry = broker.topology.work_queue("registry")
    broker.test_queues += [registry.name, registry.dlq]  # type: ignore[attr-defined]
    await declare_for_others(broker, registry)  # its RegisterAgent must route somewhere
    agent = Agent(made.grant.agent_id, settings=users.settings_of(made), heartbeat_interval_s=30)

    @agent.capability("noop")
    async def noop(task: Task) -> None:
        return None

    await agent.start()
    try:
        inbox = broker.topology.inbox_queue(made.grant.agent_id)
        ns_inbox = broker.topology.inbox

        # one malformed message alone: rejected, into the inbox's DLQ with the broker's reason
        await publish_bytes(broker, ns_inbox, made.grant.agent_id, b"{not json", message_id="m-1")
        letters = await take(broker, inbox.dlq, 1)
        assert [t.message_id for t in letters] == ["m-1"]
        death = letters[0].headers["x-death"][0]
        assert death["reason"] == "rejected"
        assert death["queue"] == inbox.name
        raw = RawDeadLetter(inbox.dlq, letters[0].body, letters[0].headers, {"message_id": "m-1"})
        parsed = parse(raw, now=datetime.now(UTC), delivery_limit=10)
        assert parsed.reason == "nacked"  # `rally dlq list`: a consumer's reject, no requeue
        assert parsed.queue == inbox.name

        # a bundle with one bad member and one good: acked, the bad member only logged
        mixed = encode_bundle([member(b"{bad"), member(stop_notice())])
        await publish_bytes(
            broker, ns_inbox, made.grant.agent_id, mixed, content_type=BUNDLE_CONTENT_TYPE
        )
        # a bundle of bad members only: rejected whole
        bad_members = [member(b"{bad"), member(b"[]")]
        worthless = encode_bundle(bad_members)
        await publish_bytes(
            broker,
            ns_inbox,
            made.grant.agent_id,
            worthless,
            content_type=BUNDLE_CONTENT_TYPE,
            message_id="bundle-2",
        )
        letters = await take(broker, inbox.dlq, 2, timeout=10)
        # the worthless bundle's two members, nothing of the mixed one
        assert [t.message_id for t in letters] == [m.message_id for m in bad_members]
        assert await depth(broker, inbox.dlq) == 0
        assert all(t.headers["x-death"][0]["reason"] == "rejected" for t in letters)

        # and the agent still takes notices: its channel never closed
        await publish_bytes(broker, ns_inbox, made.grant.agent_id, stop_notice(), message_id="ok")
        await eventually(lambda: agent.inbox.handled >= 2)
        assert await depth(broker, inbox.name) == 0
        assert await depth(broker, inbox.dlq) == 0
    finally:
        await agent.stop(timeout=1.0)
