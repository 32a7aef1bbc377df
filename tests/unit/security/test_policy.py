"""Who may act for which agent, and what an agent's broker user may touch: pure rules, no I/O."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import pytest

from broker.access import (
    NotProvisionable,
    agent_grant,
    broker_user,
    check_provisionable,
    has_own_user,
    literal,
)
from broker.deadletter import ORIGINAL_USER_ID
from broker.errors import Reject
from broker.identity import (
    AGENT_MESSAGES,
    REPLAY_OF,
    SECURITY,
    Access,
    AccessPolicy,
    access_of,
    authorizer,
    service_users_from_env,
)
from broker.router import Incoming
from broker.topology import Topology
from contracts import (
    CancelTask,
    DeclareResource,
    Envelope,
    Heartbeat,
    Message,
    RegisterAgent,
    ReportTaskSucceeded,
    SubmitTask,
    TaskTimerDue,
)
from contracts.registry import all_types
from workers.dlq.parse import REPLAY_OF as DLQ_REPLAY_OF

POLICY = AccessPolicy(service_users=frozenset({"guest"}), own_user="rally-workers")


def beat(agent: str) -> Heartbeat:
    return Heartbeat(agent_id=agent, load=0)


def report(agent: str) -> ReportTaskSucceeded:
    return ReportTaskSucceeded(task_id=uuid4(), agent_id=agent, attempt=1, fencing_token=1)


# ---- who may send what ----


@pytest.mark.parametrize("sender", ["guest", "rally-workers"])
def test_service_users_act_for_any_agent_and_send_anything(sender: str) -> None:
    for payload in (
        beat("crawler-1"),
        report("x"),
        TaskTimerDue(task_id=uuid4(), attempt=1, timer="timeout"),
    ):
        assert POLICY.refusal(sender, payload) is None


def test_an_agent_user_acts_only_for_the_agent_of_its_name() -> None:
    assert POLICY.refusal("crawler-1", beat("crawler-1")) is None
    assert POLICY.refusal("crawler-1", report("crawler-1")) is None
    refusal = POLICY.refusal("crawler-1", beat("crawler-2"))
    assert refusal is not None
    assert "'crawler-1' may not act for agent 'crawler-2' (Heartbeat)" in refusal


def test_a_prefix_or_case_variant_of_the_agent_id_is_another_agent() -> None:
    assert POLICY.refusal("crawler", beat("crawler-1")) is not None
    assert POLICY.refusal("Crawler-1", beat("crawler-1")) is not None


def test_an_agent_user_may_submit_and_cancel_but_not_send_service_commands() -> None:
    assert POLICY.refusal("crawler-1", SubmitTask(capability="c")) is None
    assert POLICY.refusal("crawler-1", SubmitTask(capability="c", reply_to="crawler-1")) is None
    assert POLICY.refusal("crawler-1", CancelTask(task_id=uuid4())) is None
    for payload in (
        TaskTimerDue(task_id=uuid4(), attempt=1, timer="timeout"),
        DeclareResource(resource="gpu", capacity=99),
    ):
        refusal = POLICY.refusal("crawler-1", payload)
        assert refusal is not None
        assert "only service users" in refusal


def test_an_agent_user_may_not_send_task_outcomes_to_another_inbox() -> None:
    refusal = POLICY.refusal("crawler-1", SubmitTask(capability="c", reply_to="client-9"))
    assert refusal is not None
    assert "'client-9'" in refusal


def test_a_message_without_user_id_is_anonymous() -> None:
    assert POLICY.refusal(None, SubmitTask(capability="c")) is None
    refusal = POLICY.refusal(None, beat("crawler-1"))
    assert refusal is not None
    assert "without user_id" in refusal
    assert POLICY.refusal(None, SubmitTask(capability="c", reply_to="client-1")) is not None


def test_workers_that_do_not_know_their_user_cannot_tell_anonymous_from_themselves() -> None:
    unknown = AccessPolicy(service_users=frozenset(), own_user=None)
    assert unknown.refusal(None, beat("crawler-1")) is None
    assert unknown.refusal("crawler-2", beat("crawler-1")) is not None


def test_every_message_type_has_an_access_and_unlisted_types_are_for_services_only() -> None:
    for name, message_type in all_types().items():
        access = access_of(message_type)
        if access is Access.AGENT:
            assert "agent_id" in message_type.model_fields, name
        elif message_type.kind != "command":
            assert access is Access.SERVICE, name  # events and notices come from workers
    commands_naming_an_agent = {
        t for t in all_types().values() if t.kind == "command" and "agent_id" in t.model_fields
    }
    assert commands_naming_an_agent == AGENT_MESSAGES


def test_service_users_come_from_the_environment() -> None:
    assert service_users_from_env({}) == {"guest"}
    assert service_users_from_env({"RALLY_SERVICE_USERS": " ops , rally ,"}) == {"ops", "rally"}
    assert service_users_from_env({"RALLY_SERVICE_USERS": ""}) == frozenset()
    policy = AccessPolicy.from_env("rally", {"RALLY_SERVICE_USERS": ""})
    assert policy.is_service("rally")
    assert not policy.is_service("guest")


# ---- who a delivery acts for: retries and replays ----


def test_the_original_user_header_counts_only_from_a_service_user() -> None:
    forged = {ORIGINAL_USER_ID: "guest"}
    assert POLICY.sender("crawler-1", forged) == "crawler-1"
    assert POLICY.sender("guest", {ORIGINAL_USER_ID: "crawler-1"}) == "crawler-1"
    assert POLICY.sender("rally-workers", {}) == "rally-workers"


def test_an_anonymous_first_sender_stays_anonymous_through_retries_and_replays() -> None:
    # the consumer stamps "" on a delivery without user_id; a worker's retry copy carries it
    assert POLICY.sender("rally-workers", {ORIGINAL_USER_ID: ""}) is None
    assert POLICY.sender("", {ORIGINAL_USER_ID: "guest"}) is None


def test_a_replay_without_a_recorded_sender_does_not_get_the_operators_rights() -> None:
    assert POLICY.sender("guest", {REPLAY_OF: "dl-1"}) is None
    assert POLICY.sender("guest", {REPLAY_OF: "dl-1", ORIGINAL_USER_ID: "crawler-1"}) == (
        "crawler-1"
    )
    assert REPLAY_OF == DLQ_REPLAY_OF


def incoming(payload: Message, user_id: str | None, **headers: Any) -> Incoming[Any]:
    return Incoming(envelope=Envelope.wrap(payload, sender="t"), user_id=user_id, headers=headers)


def test_the_authorizer_rejects_with_the_security_reason() -> None:
    authorize = authorizer(POLICY)
    authorize(incoming(beat("crawler-1"), "crawler-1"))
    authorize(incoming(RegisterAgent(agent_id="a", capabilities=("c",), capacity=1), "guest"))
    with pytest.raises(Reject) as refused:
        authorize(incoming(beat("victim"), "crawler-1"))
    assert refused.value.reason == SECURITY
    assert "may not act for agent 'victim'" in refused.value.detail


# ---- the broker permissions of an agent's user ----


def test_an_agents_grant_reaches_its_inbox_and_the_commands_exchange_only() -> None:
    topology = Topology("rally")
    grant = agent_grant("crawler.1", topology)
    assert (grant.user, grant.vhost, grant.inbox) == ("crawler.1", "/", "rally.inbox.crawler.1")

    def matches(pattern: str, name: str) -> bool:
        return re.search(pattern, name) is not None

    assert not matches(grant.configure, "rally.inbox.crawler.1")
    assert matches(grant.write, "rally.commands")
    for name in ("amq.default", "rally.events", "rally.inbox", "rally.dlx", "rally.retry"):
        assert not matches(grant.write, name), name
    assert matches(grant.read, "rally.inbox.crawler.1")
    for name in ("rally.inbox.crawlerX1", "rally.inbox.crawler.1.dlq", "rally.inbox.crawler.10"):
        assert not matches(grant.read, name), name
    assert grant.topic.exchange == "rally.commands"
    for key in ("registry.Heartbeat", "tasks.ReportTaskSucceeded", "allocator.AcquireLease"):
        assert matches(grant.topic.write, key)
    for key in ("registryX", "events.TaskSucceeded", "x.registry.Heartbeat", "tasks"):
        assert not matches(grant.topic.write, key), key


def test_literal_escapes_every_special_character() -> None:
    name = "a.b+c(d)[e]{f}|g^h$i*j?k\\l"
    assert re.fullmatch(literal(name)[1:-1], name)
    assert not re.search(literal("a.b"), "aXb")


def test_ids_that_cannot_get_a_user_of_their_own_are_refused() -> None:
    check_provisionable("crawler-1", reserved={"guest"})
    for bad in ("guest", "x.dlq", "-x", "", "a b", "x" * 129):
        with pytest.raises(NotProvisionable):
            check_provisionable(bad, reserved={"guest"})


def test_the_broker_user_is_read_from_the_url_as_the_broker_sees_it() -> None:
    assert broker_user("amqp://a%40b:pw@host/") == "a@b"
    assert broker_user("amqp://host/") is None
    assert has_own_user("amqp://crawler-1:pw@host/", "crawler-1")
    assert not has_own_user("amqp://guest:guest@host/", "crawler-1")
