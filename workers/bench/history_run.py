"""`rally bench history`: build each history, measure on it, then the retention run.

Each size gets a store of its own (a SQLite file under the scratch directory,
or a schema of its own on the PostgreSQL named), built by
:mod:`workers.bench.history_build`, checked by ``check_history``, measured by
:mod:`workers.bench.history_views` and :mod:`workers.bench.history_fleet`, then
removed. A part that fails leaves its figures ``null`` and its error in
``history.errors``; the other parts are still measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg

from broker.errors import BrokerError
from broker.settings import DEFAULT_AMQP_URL
from workers.bench import history_views as views
from workers.bench.fleet import scratch_store
from workers.bench.history_build import HistoryShape, build_history, never_published
from workers.bench.history_fleet import measure_fleet
from workers.bench.history_report import ratios, targets
from workers.bench.history_retention import retention_run
from workers.bench.history_verify import verify
from workers.bench.machine import describe_machine, load_average
from workers.store import StoreError, open_store
from workers.store.postgres_schema import quote_ident

Progress = Callable[[str], None]


@dataclass(frozen=True)
class HistoryOptions:
    base: int = 1_000
    sizes: tuple[int, ...] = (1, 10, 100)
    store_url: str | None = None  # None: SQLite files under scratch
    amqp_url: str = DEFAULT_AMQP_URL
    runs: int = 3  # of each view and start-up; the median is reported
    throughput_tasks: int = 500
    window: int = 100
    retention: str = "30s"
    retention_s: float = 180.0  # 0: no retention run
    sample_every_s: float = 10.0
    check: bool = True  # check_history over every built history
    fleet: bool = True  # start-up, failover and throughput
    scratch: Path = Path("var") / "bench"
    timeout_s: float = 900.0  # per part

    def __post_init__(self) -> None:
        if self.base < 1 or not self.sizes or min(self.sizes) < 1:
            raise ValueError("--base and every --sizes multiple must be at least 1")
        if self.runs < 1 or self.throughput_tasks < 1:
            raise ValueError("--runs and --throughput-tasks must be at least 1")

    def quickened(self) -> HistoryOptions:
        from dataclasses import replace

        return replace(
            self,
            runs=1,
            throughput_tasks=min(self.throughput_tasks, 50),
            window=min(self.window, 25),
            retention_s=min(self.retention_s, 20.0),
            sample_every_s=min(self.sample_every_s, 2.0),
            timeout_s=min(self.timeout_s, 180.0),
        )


@contextlib.asynccontextmanager
async def scratch(options: HistoryOptions, run_dir: Path, name: str) -> AsyncIterator[str]:
    """A fresh, empty store for one size; removed afterwards."""
    made = scratch_store(options.store_url, run_dir / name, f"{run_dir.name}-{name}")
    try:
        yield made.url
    finally:
        if made.pg_dsn is not None and made.pg_schema is not None:
            conn = await asyncpg.connect(made.pg_dsn)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(made.pg_schema)} CASCADE")
            finally:
                await conn.close()
        shutil.rmtree(run_dir / name, ignore_errors=True)


def cli_env(options: HistoryOptions, store_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "RALLY_STORE_URL": store_url,
        "RALLY_AMQP_URL": options.amqp_url,
        "RALLY_NAMESPACE": f"bench-history-{uuid.uuid4().hex[:8]}",
        "RALLY_LOG_LEVEL": "WARNING",
    }


async def one_size(
    options: HistoryOptions, multiple: int, run_dir: Path, progress: Progress
) -> tuple[dict[str, Any], list[str]]:
    tasks = options.base * multiple
    # the machine's load before and after: on a shared machine, the figures' context
    size: dict[str, Any] = {"multiple": multiple, "tasks": tasks, "load_average": load_average()}
    errors: list[str] = []
    async with scratch(options, run_dir, f"x{multiple}") as url:
        store = open_store(url, publishes=never_published)
        await store.start()
        try:
            built = await build_history(store, HistoryShape(tasks=tasks), progress)
            last_position = await store.last_position()
            size["build"] = {
                "events": built.events,
                "seconds": round(built.seconds, 2),
                "open_tasks": len(built.open_task_ids),
                "fates": dict(built.outcomes),
            }
            progress(f"{tasks:,} tasks: built, {built.events:,} events in {built.seconds:.1f}s")
            if options.check:
                report, unexpected = await verify(store, built.open_task_ids)
                size["build"]["violations"] = len(unexpected)
                size["build"]["submitted"] = report.submitted
                errors += [f"{tasks} tasks: history check: {v}" for v in unexpected[:5]]
        finally:
            await store.close()
        stored = await views.store_bytes(url)
        size["store"] = {"bytes": stored, "bytes_per_task": round(stored / tasks)}
        env = cli_env(options, url)
        found = await asyncio.to_thread(
            views.cli_views, url, built.sample_task_id, env, options.runs, options.timeout_s
        )
        board = await asyncio.to_thread(
            views.dashboard, url, last_position, env, run_dir / f"logs-x{multiple}", options.runs,
            options.timeout_s,
        )  # fmt: skip
        found |= {f"dashboard_{k}": v for k, v in board.items()}
        size["views"] = {k: t.as_json() for k, t in found.items()}
        errors += [f"{tasks} tasks: {k}: {t.error}" for k, t in found.items() if t.error]
        progress(f"{tasks:,} tasks: views {_medians(found)}")
        if options.fleet:
            figures = await measure_fleet(
                options.amqp_url, url, run_dir / f"logs-x{multiple}",
                repeats=options.runs, tasks=options.throughput_tasks, window=options.window,
                timeout_s=options.timeout_s, progress=progress,
            )  # fmt: skip
            size["fleet"] = figures.as_json()
            errors += [f"{tasks} tasks: fleet: {e}" for e in figures.errors]
    size["load_average_after"] = load_average()
    return size, errors


def _medians(found: dict[str, views.Timing]) -> str:
    return ", ".join(
        f"{k} {t.median_s:.2f}s" if t.median_s is not None else f"{k} failed"
        for k, t in found.items()
    )


async def run_history(options: HistoryOptions, progress: Progress) -> dict[str, Any]:
    run_dir = (options.scratch / f"history-{uuid.uuid4().hex[:8]}").resolve()
    sizes: list[dict[str, Any]] = []
    errors: list[str] = []
    pg = options.store_url if options.store_url and "postgres" in options.store_url else None
    machine = await describe_machine(options.amqp_url, pg)
    try:
        for multiple in sorted(set(options.sizes)):
            try:
                size, found = await one_size(options, multiple, run_dir, progress)
            except (StoreError, OSError, asyncpg.PostgresError, RuntimeError, BrokerError) as exc:
                size, found = (
                    {"multiple": multiple, "tasks": options.base * multiple},
                    [f"{options.base * multiple} tasks: {type(exc).__name__}: {exc}"],
                )
            sizes.append(size)
            errors += found
        retention: dict[str, Any] | None = None
        if options.retention_s > 0:
            async with scratch(options, run_dir, "retention") as url:
                run = await retention_run(
                    options.amqp_url, url, run_dir / "logs-retention",
                    retention=options.retention, duration_s=options.retention_s,
                    sample_every_s=options.sample_every_s, progress=progress,
                )  # fmt: skip
            retention = run.as_json()
            errors += [f"retention: {e}" for e in run.errors]
    finally:
        if errors:
            progress(f"processes' logs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    found_ratios = ratios(sizes)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
    return {
        "history": {
            "options": settings,
            "machine": machine,
            "sizes": sizes,
            "ratios": found_ratios,
            "targets": targets(sizes, found_ratios, retention),
            "retention": retention,
            "errors": errors,
            "note": "one machine shared with other work: figures are noisy",
        }
    }
