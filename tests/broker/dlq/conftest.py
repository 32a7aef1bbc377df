"""Dead-letter fixtures: a real work queue and consumer, the mover, its archive, `rally dlq`.

The archive and the event store share the SQLite file of ``store_url``
(``tests/support/fixtures/store.py``), as in production.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rich.console import Console

from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.publisher import Publisher
from broker.router import Router
from broker.settings import BrokerSettings
from broker.topology import QueueSpec
from workers.cli import dlq_cmd
from workers.cli.main import build_parser
from workers.dlq.archive import DeadLetterArchive, open_archive
from workers.dlq.directory import DlqDirectory
from workers.dlq.mover import DeadLetterMover
from workers.store import EventStore, open_store

# ---- the broker side: a real work queue with a real consumer runtime ----


@pytest.fixture
def broker_settings(amqp_url: str, namespace: str) -> BrokerSettings:
    """The root settings, with a small delivery limit and size limit to reach them fast."""
    return BrokerSettings(
        amqp_url=amqp_url,
        namespace=namespace,
        retry_initial_s=0.05,
        max_attempts=3,
        publish_timeout_s=5,
        delivery_limit=2,
        max_message_bytes=4096,
    )


@pytest.fixture
def work_spec(broker: BrokerConnection) -> QueueSpec:
    """``<ns>.q.test``: takes task and registry commands (the root fixture cleans it up)."""
    return broker.topology.work_queue("test", command_keys=("tasks.#", "registry.#"))


StartWorker = Callable[..., Awaitable[Consumer]]


@pytest.fixture
async def start_worker(
    broker: BrokerConnection, publisher: Publisher, work_spec: QueueSpec
) -> AsyncIterator[StartWorker]:
    started: list[Consumer] = []

    async def start(router: Router, **kwargs: Any) -> Consumer:
        consumer = Consumer(
            broker, work_spec, router, publisher, worker="test", replica="r1", **kwargs
        )
        started.append(await consumer.start())
        return consumer

    yield start
    for consumer in started:
        await consumer.stop(timeout=5)


@pytest.fixture
async def dlq_archive(store_url: str) -> AsyncIterator[DeadLetterArchive]:
    opened = open_archive(store_url)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def event_store(store_url: str) -> AsyncIterator[EventStore]:
    store = open_store(store_url)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def mover(broker: BrokerConnection, dlq_archive: DeadLetterArchive) -> DeadLetterMover:
    directory = DlqDirectory(broker.topology, workers=("test",), archive=dlq_archive)
    return DeadLetterMover(broker, dlq_archive, directory=directory, linger_s=0.01)


@dataclass
class Ran:
    code: int
    out: str

    def json(self) -> Any:
        return json.loads(self.out)


Rally = Callable[..., Awaitable[Ran]]


@pytest.fixture
def rally(
    monkeypatch: pytest.MonkeyPatch, broker_settings: BrokerSettings, store_url: str
) -> Rally:
    """Run `rally ...` in this test's loop, against this test's broker namespace and store."""
    env = {
        "RALLY_AMQP_URL": broker_settings.amqp_url,
        "RALLY_NAMESPACE": broker_settings.namespace,
        "RALLY_DELIVERY_LIMIT": str(broker_settings.delivery_limit),
        "RALLY_MAX_MESSAGE_BYTES": str(broker_settings.max_message_bytes),
        "RALLY_STORE_URL": store_url,
        "RALLY_DLQ_WORKERS": "test",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    async def run(*argv: str) -> Ran:
        args = build_parser().parse_args(list(argv))
        buffer = io.StringIO()
        console = Console(file=buffer, width=200, soft_wrap=False)
        code = await dlq_cmd.run_async(args, console)
        return Ran(code, buffer.getvalue())

    return run
