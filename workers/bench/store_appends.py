"""Store appends/s, SQLite and PostgreSQL, single and batched: the store bench, run R times."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workers.store.bench import BenchResult
from workers.store.bench import run as run_store_bench


@dataclass(frozen=True, slots=True)
class StoreSizes:
    single: int = 2_000
    total: int = 50_000
    batch: int = 500
    streams_per_batch: int = 50
    concurrency: int = 200


QUICK_SIZES = StoreSizes(single=50, total=2_000, batch=500, streams_per_batch=50, concurrency=50)


def store_urls(scratch: Path, postgres_url: str | None) -> dict[str, str]:
    """Adapter name → a URL like the one to bench (the store bench makes a fresh one of each)."""
    urls = {"sqlite": f"sqlite:///{scratch / 'store-bench.db'}"}
    if postgres_url:
        urls["postgres"] = postgres_url
    return urls


async def run_store(urls: dict[str, str], sizes: StoreSizes) -> list[BenchResult]:
    return await run_store_bench(
        urls,
        single=sizes.single,
        total=sizes.total,
        batch=sizes.batch,
        streams_per_batch=sizes.streams_per_batch,
        concurrency=sizes.concurrency,
    )
