"""The archive contract: every test runs against SQLite and PostgreSQL alike."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import timedelta

import pytest
from rich.console import Console

from tests.support.dead_letters import T0, make_letter
from workers.cli import dlq_cmd
from workers.cli.main import build_parser
from workers.dlq.archive import AmbiguousId, DeadLetterArchive, NotFound, open_archive
from workers.dlq.model import Query, ReplayRecord


async def test_a_letter_is_kept_whole(archive: DeadLetterArchive) -> None:
    letter = make_letter(3, body=b"\xff\x00not utf-8", headers={"x-death": [{"count": 1}]})
    assert await archive.add([letter]) == 1
    got = await archive.get(letter.id)
    assert got == letter  # every field, the bytes and the nested headers included


async def test_the_same_death_is_counted_once(archive: DeadLetterArchive) -> None:
    letter = make_letter(1)
    assert await archive.add([letter]) == 1
    # a crash between commit and ack: the mover sees the same death again
    assert await archive.add([letter, make_letter(2)]) == 1
    # the same message dying again later is a new dead letter
    again = make_letter(1, last_death_at=T0 + timedelta(hours=1))
    assert await archive.add([again]) == 1
    assert len(await archive.find(Query())) == 3


async def test_get_by_prefix_and_the_errors(archive: DeadLetterArchive) -> None:
    a = make_letter(1, id="abc111111111")
    b = make_letter(2, id="abc222222222")
    await archive.add([a, b])
    assert (await archive.get("abc1")).id == a.id
    assert (await archive.get("ABC2")).id == b.id
    with pytest.raises(AmbiguousId):
        await archive.get("abc")
    with pytest.raises(NotFound):
        await archive.get("fff")


async def test_find_filters_and_orders_newest_first(archive: DeadLetterArchive) -> None:
    letters = [make_letter(n) for n in range(9)]
    other = make_letter(20, dlq="rally.q.registry.dlq")
    await archive.add([*letters, other])
    everything = await archive.find(Query())
    assert [s.id for s in everything] == [other.id, *[x.id for x in reversed(letters)]]
    tasks = await archive.find(Query(queue="rally.q.tasks"))
    assert {s.id for s in tasks} == {x.id for x in letters}
    assert {s.id for s in await archive.find(Query(queue="rally.q.registry.dlq"))} == {other.id}
    invalid = await archive.find(Query(reason="invalid"))
    assert {s.id for s in invalid} == {x.id for x in [*letters, other] if x.reason == "invalid"}
    cancels = await archive.find(Query(message_type="CancelTask"))
    assert {s.message_type for s in cancels} == {"CancelTask"}
    recent = await archive.find(Query(since=T0 + timedelta(seconds=7)))
    assert {s.id for s in recent} == {letters[7].id, letters[8].id, other.id}
    oldest = await archive.find(Query(oldest_first=True, limit=2))
    assert [s.id for s in oldest] == [letters[0].id, letters[1].id]


async def test_counts_by_queue_and_reason(archive: DeadLetterArchive) -> None:
    await archive.add([make_letter(n) for n in range(6)])
    assert await archive.counts() == {
        ("rally.q.tasks", "invalid"): 2,
        ("rally.q.tasks", "handler_error"): 4,
    }


async def test_claims_keep_two_replays_apart(archive: DeadLetterArchive) -> None:
    a, b = make_letter(1), make_letter(2)
    await archive.add([a, b])
    now = T0 + timedelta(days=1)
    fresh = now - timedelta(minutes=5)
    assert await archive.claim([a.id, b.id, a.id], "r1", now=now, stale_before=fresh) == [
        a.id,
        b.id,
    ]
    assert await archive.claim([a.id], "r2", now=now, stale_before=fresh) == []
    # a claimed letter cannot be purged out from under its replay
    assert await archive.mark_purged([a.id], by="op", at=now) == []
    await archive.release([b.id], "r1")
    assert await archive.claim([b.id], "r2", now=now, stale_before=fresh) == [b.id]
    record = ReplayRecord("r1", now, "op@host", "rally.requeue", "replay.rally.q.tasks")
    assert await archive.mark_replayed(b.id, "r1", record) is False  # r2 holds it now
    assert await archive.mark_replayed(a.id, "r1", record) is True
    got = await archive.get(a.id)
    assert got.status == "replayed"
    assert got.status_by == "op@host"
    assert got.replays == (record,)
    assert [s.id for s in await archive.find(Query())] == [b.id]
    assert [s.id for s in await archive.find(Query(statuses=("replayed",)))] == [a.id]


async def test_a_crashed_replays_claim_goes_stale(archive: DeadLetterArchive) -> None:
    a = make_letter(1)
    await archive.add([a])
    await archive.claim([a.id], "crashed", now=T0, stale_before=T0 - timedelta(minutes=5))
    later = T0 + timedelta(minutes=10)
    taken = await archive.claim([a.id], "r2", now=later, stale_before=later - timedelta(minutes=5))
    assert taken == [a.id]


async def test_purge_marks_only_dead_letters(archive: DeadLetterArchive) -> None:
    a, b = make_letter(1), make_letter(2)
    await archive.add([a, b])
    assert await archive.mark_purged([a.id, "nope"], by="op", at=T0) == [a.id]
    assert await archive.mark_purged([a.id], by="op", at=T0) == []  # already purged
    got = await archive.get(a.id)
    assert (got.status, got.status_by) == ("purged", "op")
    assert await archive.counts() == {("rally.q.tasks", b.reason): 1}


async def test_scan_pages_through_everything_oldest_first(archive: DeadLetterArchive) -> None:
    letters = [make_letter(n) for n in range(23)]
    # two letters dying in the same microsecond still page correctly (the id breaks the tie)
    twin = replace(make_letter(99, last_death_at=letters[5].last_death_at), id="000000000000")
    await archive.add([*letters, twin])
    seen = [x.id async for x in archive.scan(Query(), batch=5)]
    assert len(seen) == len(set(seen)) == 24
    assert seen[:3] == [x.id for x in letters[:3]]


async def test_queues_are_remembered(archive: DeadLetterArchive) -> None:
    await archive.add([make_letter(1), make_letter(2, dlq="rally.inbox.a1.dlq")])
    assert await archive.queues() == ["rally.inbox.a1.dlq", "rally.q.tasks.dlq"]


async def test_listing_ten_thousand_lists_them_all_newest_first(
    archive: DeadLetterArchive,
) -> None:
    """Correctness at size only: how fast is for the benchmark, not a timed test."""
    for start in range(0, 10_000, 1_000):
        await archive.add([make_letter(n) for n in range(start, start + 1_000)])
    rows = await archive.find(Query())
    assert len(rows) == 10_000
    assert rows[0].last_death_at > rows[-1].last_death_at


async def test_rally_dlq_list_of_ten_thousand(store_url: str) -> None:
    """The whole command — open the archive, query, format — minus the drain, at size."""
    archive = open_archive(store_url)
    await archive.start()
    try:
        for start in range(0, 10_000, 1_000):
            await archive.add([make_letter(n) for n in range(start, start + 1_000)])
    finally:
        await archive.close()
    for flags in ((), ("--json",)):
        args = build_parser().parse_args(
            ["dlq", "list", "--no-drain", "--store", store_url, *flags]
        )
        out = io.StringIO()
        assert await dlq_cmd.run_async(args, Console(file=out, width=160)) == 0
        text = out.getvalue()
        if flags:
            assert len(json.loads(text)) == 10_000
        else:
            assert text.rstrip().endswith("10000 dead letters: handler_error 6666, invalid 3334")
