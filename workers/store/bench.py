"""Append throughput per adapter, for `make bench` (wired into `rally bench`).

Three numbers per adapter, each on a fresh, throw-away store:

- ``single``: one event per append, one append at a time — the latency-bound floor.
- ``batch``: ``append_many`` of ``batch`` events (``streams_per_batch`` streams).
- ``group``: ``concurrency`` tasks appending one event each, through the
  ``GroupCommitter`` — what a busy worker actually gets.

No relay is attached, so rows wait in the outbox for a sweeper: this measures
the store alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from workers.store import PostgresEventStore, SqliteEventStore, open_store
from workers.store.base import NewEvent, StreamAppend
from workers.store.group_commit import GroupCommitter
from workers.store.postgres_schema import quote_ident

PAYLOAD = {"capability": "summarise", "priority": 5, "payload": {"doc": "x" * 64}}


@dataclass(frozen=True, slots=True)
class BenchResult:
    adapter: str
    single_per_s: float
    batch_per_s: float
    group_per_s: float


async def bench_store(
    store: SqliteEventStore | PostgresEventStore,
    *,
    single: int = 2_000,
    total: int = 50_000,
    batch: int = 500,
    streams_per_batch: int = 50,
    concurrency: int = 200,
) -> tuple[float, float, float]:
    """Events per second: (single, batch, group). ``store`` must be started and empty."""
    started = time.perf_counter()
    for i in range(single):
        await store.append("bench-single", i, [NewEvent("Benched", PAYLOAD)])
    single_rate = single / (time.perf_counter() - started)

    per_stream = batch // streams_per_batch
    started = time.perf_counter()
    for b in range(total // batch):
        await store.append_many(
            [
                StreamAppend(
                    f"bench-{b}-{s}", 0, [NewEvent("Benched", PAYLOAD) for _ in range(per_stream)]
                )
                for s in range(streams_per_batch)
            ]
        )
    batch_rate = (total // batch) * batch / (time.perf_counter() - started)

    committer = GroupCommitter(store)

    async def task(t: int) -> None:
        for i in range(total // concurrency):
            await committer.append(f"bench-group-{t}", i, [NewEvent("Benched", PAYLOAD)])

    started = time.perf_counter()
    await asyncio.gather(*(task(t) for t in range(concurrency)))
    group_rate = (total // concurrency) * concurrency / (time.perf_counter() - started)
    await committer.stop()
    return single_rate, batch_rate, group_rate


@contextlib.asynccontextmanager
async def scratch_store(url: str) -> AsyncIterator[SqliteEventStore | PostgresEventStore]:
    """A fresh store like ``url`` (a temp file, or a temp schema), removed afterwards."""
    if url.startswith(("postgresql://", "postgres://")):
        schema = f"rally_bench_{uuid.uuid4().hex[:8]}"
        store = open_store(f"{url}{'&' if '?' in url else '?'}schema={schema}")
        try:
            await store.start()
            yield store
        finally:
            await store.close()
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
            finally:
                await conn.close()
        return
    with tempfile.TemporaryDirectory(prefix="rally-bench-") as tmp:
        store = open_store(str(Path(tmp) / "bench.db"))
        try:
            await store.start()
            yield store
        finally:
            await store.close()


async def run(urls: dict[str, str], **sizes: int) -> list[BenchResult]:
    """Bench each adapter (name → URL) in turn."""
    results = []
    for name, url in urls.items():
        async with scratch_store(url) as store:
            rates = await bench_store(store, **sizes)
        results.append(BenchResult(name, *rates))
    return results


def format_results(results: list[BenchResult]) -> str:
    """Adapters side by side, events per second."""
    lines = [f"{'appends (events/s)':<34}" + "".join(f"{r.adapter:>12}" for r in results)]
    for label, attr in (
        ("single event per append", "single_per_s"),
        ("batched (append_many)", "batch_per_s"),
        ("group commit (concurrent appends)", "group_per_s"),
    ):
        lines.append(f"{label:<34}" + "".join(f"{getattr(r, attr):>12,.0f}" for r in results))
    return "\n".join(lines)
