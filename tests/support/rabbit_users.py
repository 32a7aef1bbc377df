"""Agents with broker users of their own: provisioned per test with unique names, deleted after.

Needs ``rabbitmqctl`` on this host, allowed to manage users of the test broker; the tests
skip where it is not.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from broker.connection import BrokerConnection
from broker.settings import BrokerSettings
from workers.cli.provision import Provisioned, provision


async def rabbitmqctl(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def rabbitmqctl_json(*argv: str) -> list[dict[str, object]]:
    code, out = await rabbitmqctl(*argv, "--quiet", "--formatter", "json")
    assert code == 0, out
    rows: list[dict[str, object]] = json.loads(out)
    return rows


async def user_names() -> set[str]:
    return {str(row["user"]) for row in await rabbitmqctl_json("list_users")}


@dataclass
class Users:
    """Make agent ids unique to this run; provision them; remember what to delete."""

    broker: BrokerConnection
    settings: BrokerSettings
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    created: list[str] = field(default_factory=list)

    def new_id(self, role: str) -> str:
        agent_id = f"sec-{self.run}-{role}"
        spec = self.broker.topology.inbox_queue(agent_id)
        self.broker.test_queues += [spec.name, spec.dlq]  # type: ignore[attr-defined]
        self.created.append(agent_id)
        return agent_id

    async def provision(self, role: str) -> Provisioned:
        return await provision(self.new_id(role), settings=self.settings)

    def settings_of(self, agent: Provisioned) -> BrokerSettings:
        return self.settings.model_copy(update={"amqp_url": agent.url})


@pytest.fixture
async def users(broker: BrokerConnection, broker_settings: BrokerSettings) -> AsyncIterator[Users]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH")
    code, out = await rabbitmqctl("list_users", "--quiet")
    if code != 0:
        pytest.skip(f"rabbitmqctl cannot manage users here: {out.strip()[:200]}")
    made = Users(broker, broker_settings)
    yield made
    await asyncio.gather(*(rabbitmqctl("delete_user", name) for name in made.created))


async def refusal(conn: BrokerConnection, operation: Callable[..., Awaitable[object]]) -> str:
    """Run ``operation(channel)`` on a channel of its own; the broker's refusal, or ''."""
    channel = await conn.connection.channel(publisher_confirms=True)
    try:
        await operation(channel)
    except Exception as exc:  # the refusal closes the channel; its text says which
        return f"{type(exc).__name__}: {exc}"
    finally:
        if not channel.is_closed:
            await channel.close()
    return ""
