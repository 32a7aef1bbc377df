"""`rally agents provision ID` against the real broker and rabbitmqctl."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest

from broker.connection import BrokerConnection
from broker.errors import BrokerUnavailable
from broker.settings import BrokerSettings
from tests.support.cli import rally
from tests.support.rabbit_users import Users, rabbitmqctl_json, user_names
from workers.cli.provision import Rabbitmqctl, provision, render

pytestmark = pytest.mark.broker


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, broker_settings: BrokerSettings) -> None:
    monkeypatch.setenv("RALLY_AMQP_URL", broker_settings.amqp_url)
    monkeypatch.setenv("RALLY_NAMESPACE", broker_settings.namespace)
    monkeypatch.delenv("RALLY_SERVICE_USERS", raising=False)


async def inbox_exists(broker: BrokerConnection, name: str) -> bool:
    channel = await broker.connection.channel(publisher_confirms=False)
    try:
        await channel.declare_queue(name, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return False
    if not channel.is_closed:
        await channel.close()
    return True


async def can_log_in(settings: BrokerSettings) -> bool:
    try:
        conn = await BrokerConnection(settings, role="test").connect(timeout=5)
    except BrokerUnavailable:
        return False
    await conn.close()
    return True


@pytest.mark.usefixtures("cli_env")
async def test_provision_creates_a_user_restricted_to_its_inbox_and_agent_routes(
    users: Users, broker: BrokerConnection, broker_settings: BrokerSettings
) -> None:
    agent_id = users.new_id("prov")
    ns = broker_settings.namespace
    code, out, err = await asyncio.to_thread(rally, "agents", "provision", agent_id, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["applied"]
    assert result["password_generated"]
    assert result["inbox_declared"]
    assert result["user_existed"] is False
    password = result["password"]
    assert result["url"] == f"amqp://{agent_id}:{password}@127.0.0.1:5672/"

    permissions = await rabbitmqctl_json("list_user_permissions", agent_id)
    assert permissions == [
        {
            "vhost": "/",
            "configure": "^$",
            "write": f"^{ns}\\.commands$",
            "read": f"^{ns}\\.inbox\\.{agent_id}$",
        }
    ]
    topic = await rabbitmqctl_json("list_user_topic_permissions", agent_id)
    assert topic == [
        {
            "vhost": "/",
            "exchange": f"{ns}.commands",
            "write": "^(registry|tasks|allocator)\\.",
            "read": "^$",
        }
    ]
    tags = {str(u["user"]): u["tags"] for u in await rabbitmqctl_json("list_users")}
    assert tags[agent_id] == []
    inbox = broker.topology.inbox_queue(agent_id)
    assert await inbox_exists(broker, inbox.name)
    assert await inbox_exists(broker, inbox.dlq)
    as_agent = users.settings.model_copy(update={"amqp_url": result["url"]})
    assert await can_log_in(as_agent)

    # again: the same user, a new password; the old one no longer logs in
    again = await provision(agent_id, settings=broker_settings, password="second-password")
    assert again.applied
    assert again.existed
    assert not again.generated
    assert await can_log_in(users.settings_of(again))
    assert not await can_log_in(as_agent)
    assert await rabbitmqctl_json("list_user_permissions", agent_id) == permissions


@pytest.mark.usefixtures("cli_env")
async def test_print_prints_the_exact_commands_and_changes_nothing(
    users: Users, broker: BrokerConnection, broker_settings: BrokerSettings
) -> None:
    agent_id = users.new_id("printed")
    ns = broker_settings.namespace
    code, out, err = await asyncio.to_thread(
        rally, "agents", "provision", agent_id, "--print", "--password", "s3cret"
    )
    assert code == 0, err
    commands = [line for line in out.splitlines() if line.startswith("rabbitmqctl ")]
    assert commands == [
        f"rabbitmqctl add_user {agent_id} s3cret",
        f"rabbitmqctl set_user_tags {agent_id}",
        f"rabbitmqctl set_permissions -p / {agent_id} '^$' '^{ns}\\.commands$' "
        f"'^{ns}\\.inbox\\.{agent_id}$'",
        f"rabbitmqctl set_topic_permissions -p / {agent_id} {ns}.commands "
        "'^(registry|tasks|allocator)\\.' '^$'",
    ]
    assert f"url: amqp://{agent_id}:s3cret@127.0.0.1:5672/" in out
    assert agent_id not in await user_names()
    assert not await inbox_exists(broker, broker.topology.inbox_queue(agent_id).name)


async def test_where_rabbitmqctl_cannot_run_it_prints_the_commands_and_declares_the_inbox(
    users: Users, broker: BrokerConnection, broker_settings: BrokerSettings
) -> None:
    agent_id = users.new_id("noctl")
    result = await provision(
        agent_id, settings=broker_settings, ctl=Rabbitmqctl("rabbitmqctl-not-installed-here")
    )
    assert not result.applied
    assert result.inbox_declared
    text = render(result)
    assert "rabbitmqctl-not-installed-here is not on PATH" in text
    assert f"rabbitmqctl add_user {agent_id} {result.password}" in text
    assert agent_id not in await user_names()
    assert await inbox_exists(broker, broker.topology.inbox_queue(agent_id).name)


@pytest.mark.usefixtures("cli_env")
async def test_service_users_and_colliding_ids_are_refused(users: Users) -> None:
    for bad in ("guest", f"{users.new_id('x')}.dlq"):
        code, out, err = await asyncio.to_thread(rally, "agents", "provision", bad, "--print")
        assert code == 2
        assert out == ""
        assert err.startswith("rally: ")
        assert repr(bad) in err
