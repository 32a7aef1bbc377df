"""What a client's inbox takes on trust: outcomes of its own tasks, from service users only,
and refusals that fail a handle at once (issue 14: forged outcomes, TaskRefused)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from broker.connection import BrokerConnection
from broker.publisher import Publisher
from broker.settings import BrokerSettings
from contracts import TaskOutcome, TaskRefused
from sdk import Client, TaskRefusedError
from tests.broker.sdk.conftest import Notify
from tests.support.rabbit_users import rabbitmqctl
from tests.support.standin import Observer, task_of

pytestmark = pytest.mark.broker


async def test_a_refused_submit_fails_its_handle_at_once(
    client: Client, observer: Observer, notify: Notify
) -> None:
    handle = await client.submit("crawl", idempotency_key="taken")
    await observer.wait_for("SubmitTask", task_of(handle.task_id))
    await notify(
        "client-test",
        TaskRefused(task_id=handle.task_id, reason="conflict", detail="key taken by another"),
    )
    # far shorter than the time-out a refused task used to wait out
    with pytest.raises(TaskRefusedError) as refused:
        await handle.result(timeout=30)
    assert (refused.value.task_id, refused.value.reason) == (handle.task_id, "conflict")
    assert "key taken by another" in str(refused.value)


async def test_an_outcome_for_a_task_it_did_not_submit_is_not_taken(
    client: Client, observer: Observer, notify: Notify
) -> None:
    stranger = uuid.uuid4()
    await notify(
        "client-test", TaskOutcome(task_id=stranger, state="succeeded", attempt=1, result="x")
    )
    mine = await client.submit("crawl")
    await notify(
        "client-test", TaskOutcome(task_id=mine.task_id, state="succeeded", attempt=1, result=1)
    )
    assert await mine.result(timeout=5) == 1  # the inbox took both, in order
    assert not client.handle(stranger).done()


@pytest.fixture
async def outsider(
    broker: BrokerConnection, broker_settings: BrokerSettings
) -> AsyncIterator[Publisher]:
    """A broker user that may publish to the inbox exchange but is no service user."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH")
    name, password = f"outsider-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    code, out = await rabbitmqctl("add_user", name, password)
    if code != 0:
        pytest.skip(f"rabbitmqctl cannot manage users here: {out.strip()[:200]}")
    parts = urlsplit(broker_settings.amqp_url)
    vhost = parts.path.lstrip("/") or "/"
    inbox = broker.topology.inbox.replace(".", r"\.")
    await rabbitmqctl("set_permissions", "-p", vhost, name, "^$", f"^{inbox}$", "^$")
    url = urlunsplit(
        parts._replace(netloc=f"{quote(name)}:{password}@{parts.hostname}:{parts.port or 5672}")
    )
    conn = await BrokerConnection(
        broker_settings.model_copy(update={"amqp_url": url}), role="test", replica=name
    ).connect()
    try:
        yield await Publisher(conn, sender="task-manager").start()
    finally:
        await conn.close()
        await rabbitmqctl("delete_user", name)


async def test_an_outcome_from_a_user_that_is_not_a_service_user_is_not_taken(
    client: Client, observer: Observer, notify: Notify, outsider: Publisher
) -> None:
    handle = await client.submit("crawl")
    await observer.wait_for("SubmitTask", task_of(handle.task_id))
    forged = TaskOutcome(task_id=handle.task_id, state="succeeded", attempt=1, result="forged")
    await outsider.send(forged, to="client-test")
    real = TaskOutcome(task_id=handle.task_id, state="succeeded", attempt=1, result="real")
    await notify("client-test", real)  # from guest, a service user
    assert await handle.result(timeout=5) == "real"
