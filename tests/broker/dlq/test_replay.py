"""Replay on the real broker and store: once each, only after a confirm, never when invalid."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

import contracts as c
from broker.connection import BrokerConnection
from broker.logs import configure_logging
from broker.publisher import Publisher
from broker.topology import QueueSpec
from contracts import DeadLetterReplayed, DeadLetterReplayRefused
from tests.broker.dlq.conftest import Rally, StartWorker
from tests.broker.dlq.scenario import TestWorker, dlq_depth, envelope, raw, until
from tests.support.amqp import depth, publish_bytes
from workers.cli.main import UserError
from workers.dlq.archive import DeadLetterArchive
from workers.dlq.history import STREAM_PREFIX
from workers.dlq.model import Query
from workers.dlq.mover import DeadLetterMover
from workers.store import EventStore

pytestmark = pytest.mark.broker


async def _history(store: EventStore) -> list[str]:
    return [e.type for e in await store.read_all(0, 10_000, stream_prefix=STREAM_PREFIX)]


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """200 handler failures, each logged with a rich traceback, cost seconds: log plain JSON."""
    configure_logging("WARNING", json=True)
    yield
    structlog.reset_defaults()


@pytest.mark.slow
@pytest.mark.usefixtures("quiet_logs")
async def test_a_fixed_bug_replays_every_letter_exactly_once(
    publisher: Publisher,
    start_worker: StartWorker,
    mover: DeadLetterMover,
    dlq_archive: DeadLetterArchive,
    event_store: EventStore,
    rally: Rally,
) -> None:
    worker = TestWorker()
    await start_worker(worker.router)
    await mover.start()  # as in a worker process: letters move to the archive as they die
    try:
        sent = [await publisher.send(c.SubmitTask(capability="boom")) for _ in range(100)]

        async def all_archived() -> bool:
            return len(await dlq_archive.find(Query())) == 100

        await until(all_archived, timeout=60)
    finally:
        await mover.stop()
    assert not worker.seen  # the bug: nothing was handled

    worker.fixed = True  # the fix is deployed
    report = (await rally("dlq", "replay", "--all", "--by", "ops-alice", "--json")).json()
    assert [r["outcome"] for r in report["results"]] == ["replayed"] * 100

    async def all_handled() -> bool:
        return len(worker.seen) == 100

    await until(all_handled, timeout=30)
    await asyncio.sleep(0.5)  # a duplicate would arrive about now
    assert set(worker.seen) == {str(e.id) for e in sent}
    assert set(worker.seen.values()) == {1}

    # a second replay finds nothing left to do
    again = (await rally("dlq", "replay", "--all", "--json")).json()
    assert again["results"] == []
    await asyncio.sleep(0.3)
    assert set(worker.seen.values()) == {1}

    assert await dlq_archive.find(Query()) == []
    replayed = await dlq_archive.find(Query(statuses=("replayed",)))
    assert len(replayed) == 100
    letter = await dlq_archive.get(replayed[0].id)
    assert [(r.by, r.replay_id) for r in letter.replays] == [("ops-alice", report["replay_id"])]
    history = await event_store.read_all(0, 10_000, stream_prefix=STREAM_PREFIX)
    assert {e.type for e in history} == {DeadLetterReplayed.type_name()}
    assert len({e.stream for e in history}) == 100
    assert {e.data["by"] for e in history} == {"ops-alice"}


async def test_a_still_invalid_message_is_refused_and_nothing_is_published(
    broker: BrokerConnection,
    work_spec: QueueSpec,
    start_worker: StartWorker,
    event_store: EventStore,
    rally: Rally,
    tmp_path: Path,
) -> None:
    worker = TestWorker()
    consumer = await start_worker(worker.router)
    wire = envelope(c.SubmitTask(capability="crawl"))
    wire["payload"]["priority"] = 5000  # over the contract's limit of 1000
    await publish_bytes(broker, broker.topology.commands, "tasks.SubmitTask", raw(wire))

    async def dead() -> bool:
        return await dlq_depth(broker, work_spec.dlq) == 1

    await until(dead)
    (letter,) = (await rally("dlq", "list", "--json")).json()
    await consumer.stop()  # so that anything published would wait in the queue, countable

    refused = await rally("dlq", "replay", letter["id"], "--json")
    assert refused.code == 1
    (result,) = refused.json()["results"]
    assert result["outcome"] == "refused"
    assert result["detail"].startswith("invalid: SubmitTask does not match its contract")
    assert "payload.priority" in result["detail"]

    still_wrong = tmp_path / "still-wrong.json"
    still_wrong.write_text(json.dumps({**wire, "payload": {**wire["payload"], "priority": 2000}}))
    edited = await rally("dlq", "replay", letter["id"], "--edit", str(still_wrong), "--json")
    assert [r["outcome"] for r in edited.json()["results"]] == ["refused"]

    await asyncio.sleep(0.3)
    assert await depth(broker, work_spec.name) == 0  # nothing was published
    shown = (await rally("dlq", "show", letter["id"], "--json")).json()
    assert shown["status"] == "dead"
    refusals = [DeadLetterReplayRefused.type_name()] * 2
    assert await _history(event_store) == refusals

    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({**wire, "payload": {**wire["payload"], "priority": 10}}))
    done = await rally("dlq", "replay", letter["id"], "--edit", str(fixed), "--json")
    assert [r["outcome"] for r in done.json()["results"]] == ["replayed"]
    assert await depth(broker, work_spec.name) == 1
    replays = (await rally("dlq", "show", letter["id"], "--json")).json()["replays"]
    assert [r["edited"] for r in replays] == [True]


async def test_dry_run_publishes_nothing_and_changes_nothing(
    broker: BrokerConnection,
    publisher: Publisher,
    work_spec: QueueSpec,
    start_worker: StartWorker,
    event_store: EventStore,
    rally: Rally,
) -> None:
    consumer = await start_worker(TestWorker().router)
    for capability in ("boom", "refuse"):
        await publisher.send(c.SubmitTask(capability=capability))

    async def dead() -> bool:
        return await dlq_depth(broker, work_spec.dlq) == 2

    await until(dead)
    await consumer.stop()
    ran = await rally("dlq", "replay", "--filter", "reason=rejected", "--dry-run", "--json")
    (result,) = ran.json()["results"]
    assert result["outcome"] == "would_replay"
    assert result["exchange"] == broker.topology.requeue
    assert result["routing_key"] == f"replay.{work_spec.name}"
    await asyncio.sleep(0.3)
    assert await depth(broker, work_spec.name) == 0
    assert len((await rally("dlq", "list", "--json")).json()) == 2
    assert await _history(event_store) == []


async def test_replay_to_origin_and_a_rate(
    broker: BrokerConnection,
    publisher: Publisher,
    work_spec: QueueSpec,
    start_worker: StartWorker,
    rally: Rally,
) -> None:
    worker = TestWorker()
    await start_worker(worker.router)
    for _ in range(3):
        await publisher.send(c.SubmitTask(capability="refuse"))

    async def dead() -> bool:
        return await dlq_depth(broker, work_spec.dlq) == 3

    await until(dead)
    worker.fixed = True
    ran = await rally("dlq", "replay", "--all", "--to-origin", "--rate", "20/s", "--json")
    results = ran.json()["results"]
    assert {(r["outcome"], r["exchange"], r["routing_key"]) for r in results} == {
        ("replayed", broker.topology.commands, "tasks.SubmitTask")
    }

    async def handled() -> bool:
        return len(worker.seen) == 3

    await until(handled)


async def test_purge_and_export(
    broker: BrokerConnection,
    publisher: Publisher,
    work_spec: QueueSpec,
    start_worker: StartWorker,
    event_store: EventStore,
    rally: Rally,
    tmp_path: Path,
) -> None:
    await start_worker(TestWorker().router)
    for _ in range(3):
        await publisher.send(c.SubmitTask(capability="refuse"))

    async def dead() -> bool:
        return await dlq_depth(broker, work_spec.dlq) == 3

    await until(dead)
    first, *rest = (await rally("dlq", "list", "--json")).json()
    assert (await rally("dlq", "purge", first["id"], "--by", "ops-bob")).code == 0
    assert len((await rally("dlq", "list", "--json")).json()) == 2
    with pytest.raises(UserError, match="--yes"):
        await rally("dlq", "purge", "--all")
    assert (await rally("dlq", "purge", "--all", "--yes")).code == 0
    assert (await rally("dlq", "list", "--json")).json() == []

    out = tmp_path / "dead.jsonl"
    assert (await rally("dlq", "export", "--to", str(out))).code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {x["id"] for x in lines} == {first["id"], *(x["id"] for x in rest)}
    assert {x["status"] for x in lines} == {"purged"}
    assert json.loads(lines[0]["body"])["type"] == "SubmitTask"
    history = await event_store.read_all(0, 100, stream_prefix=STREAM_PREFIX)
    assert [e.data["by"] for e in history if e.data["dead_letter_id"] == first["id"]] == ["ops-bob"]
    assert len(history) == 3
