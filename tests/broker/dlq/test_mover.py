"""The mover on the real broker: ack only after the archive committed; find every DLQ."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from broker import headers as h
from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.topology import QueueSpec
from contracts import BUNDLE_CONTENT_TYPE, BundleMember, encode_bundle
from contracts.bundle import BUNDLE_COUNT
from tests.broker.dlq.scenario import dlq_depth, until
from tests.support.amqp import publish_bytes
from workers.dlq.archive import ArchiveUnavailable, DeadLetterArchive
from workers.dlq.directory import DlqDirectory
from workers.dlq.model import DeadLetter, Query
from workers.dlq.mover import DeadLetterMover

pytestmark = pytest.mark.broker


class DownArchive:
    """The real archive, except that storing fails (the database is away)."""

    def __init__(self, archive: DeadLetterArchive) -> None:
        self.archive = archive
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.archive, name)

    async def add(self, letters: Sequence[DeadLetter]) -> int:
        self.calls += 1
        raise ArchiveUnavailable("database is locked")


async def _dead_letter(broker: BrokerConnection, queue: str, n: int, key: str = "") -> None:
    headers = {h.DL_REASON: "rejected", h.DL_ERROR: "no", h.DL_LAST_DEATH: f"2030-01-01T00:00:0{n}"}
    headers[h.DL_QUEUE] = queue  # as the consumer runtime names the queue it died in
    await publish_bytes(
        broker, broker.topology.dlx, key or queue, b'{"n": %d}' % n, message_id=f"m{n}",
        headers=headers,
    )  # fmt: skip


async def test_nothing_is_acked_that_the_archive_did_not_commit(
    broker: BrokerConnection, work_spec: QueueSpec, dlq_archive: DeadLetterArchive
) -> None:
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, work_spec)
    for n in range(3):
        await _dead_letter(broker, work_spec.name, n)
    directory = DlqDirectory(broker.topology, workers=("test",))
    down = DownArchive(dlq_archive)
    failing = DeadLetterMover(broker, down, directory=directory)  # type: ignore[arg-type]
    with pytest.raises(ArchiveUnavailable):
        await failing.drain()
    assert down.calls == 1

    async def back_in_queue() -> bool:
        return await dlq_depth(broker, work_spec.dlq) == 3

    await until(back_in_queue, timeout=5)
    assert await dlq_archive.find(Query()) == []

    mover = DeadLetterMover(broker, dlq_archive, directory=directory, batch_size=2)
    assert await mover.drain() == 3
    assert await dlq_depth(broker, work_spec.dlq) == 0
    assert len(await dlq_archive.find(Query())) == 3


async def test_a_running_mover_keeps_going_when_the_archive_comes_back(
    broker: BrokerConnection, work_spec: QueueSpec, dlq_archive: DeadLetterArchive
) -> None:
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, work_spec)
    down = DownArchive(dlq_archive)
    directory = DlqDirectory(broker.topology, workers=("test",))
    mover = DeadLetterMover(
        broker,
        down,  # type: ignore[arg-type]
        directory=directory,
        linger_s=0.01,
        retry_s=0.05,
    )
    await mover.start()
    try:
        await _dead_letter(broker, work_spec.name, 1)

        async def tried_twice() -> bool:
            return down.calls >= 2

        await until(tried_twice, timeout=5)
        down.add = dlq_archive.add  # type: ignore[method-assign]  # the database is back

        async def archived() -> bool:
            return len(await dlq_archive.find(Query())) == 1

        await until(archived, timeout=5)
    finally:
        await mover.stop()
    assert await dlq_depth(broker, work_spec.dlq) == 0


async def test_agent_inbox_dlqs_are_found_and_drained(
    broker: BrokerConnection, dlq_archive: DeadLetterArchive
) -> None:
    inbox = broker.topology.inbox_queue("agent-7")
    broker.test_queues.append(inbox.dlq)  # type: ignore[attr-defined]  # clean-up
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, inbox)
    # every inbox dead-letters to the one DLQ they share (ns.inboxes.dlq)
    await _dead_letter(broker, inbox.name, 1, key=broker.topology.dead_letter_key(inbox))

    async def agents() -> list[str]:
        return ["agent-7", "agent-gone"]  # an agent whose inbox never existed is skipped

    directory = DlqDirectory(broker.topology, workers=(), agents=agents, archive=dlq_archive)
    assert inbox.dlq in await directory.candidates()
    mover = DeadLetterMover(broker, dlq_archive, directory=directory)
    assert await mover.drain() == 1
    (row,) = await dlq_archive.find(Query())
    assert row.queue == inbox.name
    # the archive now remembers the DLQ, so it is drained even without the agent list
    remembered = DlqDirectory(broker.topology, workers=(), archive=dlq_archive)
    assert inbox.dlq in await remembered.candidates()


async def test_a_bundle_in_a_dlq_is_archived_message_by_message(
    broker: BrokerConnection, work_spec: QueueSpec, dlq_archive: DeadLetterArchive
) -> None:
    # a bundle reaches a DLQ whole when a worker died on it until its delivery limit ran out
    channel = await broker.channel(confirms=False)
    await declare_queue(broker, channel, work_spec)
    members = [
        BundleMember(
            body=b'{"n": %d}' % n,
            message_id=f"b{n}",
            type="ReportTaskSucceeded",
            correlation_id=f"c{n}",
            headers={"traceparent": f"00-{n + 1:032x}-{n + 1:016x}-01"},
        )
        for n in range(3)
    ]
    headers = {h.DL_REASON: "delivery_limit", h.DL_LAST_DEATH: "2030-01-01T00:00:01"}
    await publish_bytes(
        broker,
        broker.topology.dlx,
        work_spec.name,
        encode_bundle(members),
        content_type=BUNDLE_CONTENT_TYPE,
        message_id="bundle",
        headers={**headers, BUNDLE_COUNT: 3},
    )
    broken = b'{"n": 99}\n{}\n'  # does not split: archived whole, as it came
    await publish_bytes(
        broker,
        broker.topology.dlx,
        work_spec.name,
        broken,
        content_type=BUNDLE_CONTENT_TYPE,
        message_id="broken",
        headers=headers,
    )
    mover = DeadLetterMover(
        broker, dlq_archive, directory=DlqDirectory(broker.topology, workers=("test",))
    )
    assert await mover.drain() == 4
    rows = {row.message_id: row for row in await dlq_archive.find(Query())}
    assert set(rows) == {"b0", "b1", "b2", "broken"}
    for n in range(3):
        letter = await dlq_archive.get(rows[f"b{n}"].id)
        assert letter.body == b'{"n": %d}' % n
        assert (letter.message_type, letter.reason) == ("ReportTaskSucceeded", "delivery_limit")
        assert letter.correlation_id == f"c{n}"
        assert letter.headers["traceparent"] == members[n].headers["traceparent"]
        assert BUNDLE_COUNT not in letter.headers
    assert (await dlq_archive.get(rows["broken"].id)).body == broken
