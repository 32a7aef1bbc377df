"""One whole bench: every part, R runs each, on the same RabbitMQ, then the report.

The three compared figures are interleaved — floor, rallypoint, Celery, then
again — so a machine that gets busier half-way (this one is shared) weighs on
all three alike instead of on whichever ran last. Scaling and the store come
after. A part that fails is recorded in ``errors`` and its figures stay
``null``; the others still run.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import structlog

from workers.bench.celery_peer import CeleryOptions, CeleryRun, run_celery
from workers.bench.fleet import FleetShape
from workers.bench.floor import FloorOptions, FloorRun, run_floor
from workers.bench.machine import describe_machine, load_average
from workers.bench.options import BenchOptions
from workers.bench.rallypoint import RallyOptions, RallyRun, run_rallypoint
from workers.bench.report import Collected, build_report
from workers.bench.store_appends import QUICK_SIZES, StoreSizes, run_store, store_urls

log = structlog.get_logger(__name__)

Progress = Callable[[str], None]
T = TypeVar("T")


def fleet_shape(options: BenchOptions, replicas: int) -> FleetShape:
    return FleetShape(
        replicas=replicas,
        agents=options.agents,
        agent_capacity=options.agent_capacity,
        store_url=options.store_url,
        scratch=options.scratch,
    )


def rally_options(options: BenchOptions, *, sequential: bool, profile: bool) -> RallyOptions:
    return RallyOptions(
        tasks=options.tasks,
        window=options.window,
        sequential=options.sequential if sequential else 0,
        warmup=options.warmup,
        timeout_s=options.timeout_s,
        profile_dir=options.profile if profile else None,
    )


async def run_celery_async(amqp_url: str, options: CeleryOptions) -> CeleryRun:
    """Celery's client is synchronous: it runs in a thread, told to stop if we are cancelled."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(run_celery, amqp_url, options, cancel)
    except asyncio.CancelledError:
        cancel.set()
        raise


class Bench:
    def __init__(self, options: BenchOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.collected = Collected()
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        self._failed: set[str] = set()

    async def _attempt(self, part: str, label: str, run: Callable[[], Awaitable[T]]) -> T | None:
        """Run one measurement; a failure is recorded and ends that part's further runs."""
        if part in self._failed:
            return None
        started = time.monotonic()
        self.progress(f"{label} ...")
        try:
            result = await run()
        except Exception as exc:
            self._failed.add(part)
            message = f"{label}: {type(exc).__name__}: {exc}"
            self.collected.errors.append(message)
            self.progress(f"{label} FAILED: {exc}")
            log.warning("bench.part_failed", part=part, error=message, exc_info=True)
            return None
        self.progress(f"{label} done in {time.monotonic() - started:.1f}s")
        return result

    async def compared(self) -> None:
        o, c = self.options, self.collected
        floor = FloorOptions(messages=o.tasks, window=o.floor_window, sequential=o.sequential)
        celery = CeleryOptions(
            tasks=o.tasks,
            pool=o.celery_pool,
            concurrency=o.celery_concurrency,
            warmup=o.warmup,
            sequential=o.sequential,
            timeout_s=o.timeout_s,
            scratch=o.scratch,
        )
        for i in range(o.runs):
            tag = f"run {i + 1}/{o.runs}"
            if o.runs_part("floor"):
                run_f = await self._attempt(
                    "floor",
                    f"floor {tag}",
                    partial(run_floor, o.amqp_url, floor, f"{self.prefix}-{i}"),
                )
                if run_f is not None:
                    c.floor.append(run_f)
                    self.progress(_floor_line(run_f))
            if o.runs_part("rallypoint"):
                rally = rally_options(o, sequential=True, profile=i == 0)
                run_r = await self._attempt(
                    "rallypoint",
                    f"rallypoint {tag}",
                    partial(run_rallypoint, o.amqp_url, fleet_shape(o, o.replicas), rally),
                )
                if run_r is not None:
                    c.rallypoint.append(run_r)
                    self.progress(_rally_line(run_r))
            if o.runs_part("celery"):
                run_c = await self._attempt(
                    "celery", f"celery {tag}", partial(run_celery_async, o.amqp_url, celery)
                )
                if run_c is not None:
                    c.celery.append(run_c)
                    self.progress(_celery_line(run_c))

    async def scaling(self) -> None:
        o, c = self.options, self.collected
        if not o.runs_part("scaling"):
            return
        for replicas in o.scaling:
            if replicas == o.replicas and o.runs_part("rallypoint") and c.rallypoint:
                c.scaling[replicas] = list(c.rallypoint)  # the same measurement: reuse it
                continue
            runs: list[RallyRun] = []
            scaled = rally_options(o, sequential=False, profile=False)
            for i in range(o.runs):
                run = await self._attempt(
                    f"scaling-{replicas}",
                    f"scaling {replicas} replica(s) run {i + 1}/{o.runs}",
                    partial(run_rallypoint, o.amqp_url, fleet_shape(o, replicas), scaled),
                )
                if run is not None:
                    runs.append(run)
                    self.progress(f"  {replicas} replica(s): {run.tasks_per_s:,.0f} tasks/s")
            c.scaling[replicas] = runs

    async def store(self) -> None:
        o = self.options
        if not o.runs_part("store"):
            return
        sizes = QUICK_SIZES if o.quick else StoreSizes()
        urls = store_urls(o.scratch, o.pg_url)
        o.scratch.mkdir(parents=True, exist_ok=True)
        for i in range(o.runs):
            results = await self._attempt(
                "store", f"store run {i + 1}/{o.runs}", partial(run_store, urls, sizes)
            )
            if results is not None:
                self.collected.store.append(results)


async def run_bench(options: BenchOptions, progress: Progress) -> dict[str, Any]:
    """Measure everything ``options`` asks for and return the report (not yet written)."""
    started_at = datetime.now(UTC)
    started = time.monotonic()
    machine = await describe_machine(options.amqp_url, options.pg_url)
    bench = Bench(options, progress)
    await bench.compared()
    await bench.scaling()
    await bench.store()
    machine["load_average_at_end"] = load_average()
    timing = {
        "started_at": started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "duration_s": round(time.monotonic() - started, 1),
    }
    return build_report(bench.collected, options, machine, timing)


def _floor_line(run: FloorRun) -> str:
    return (
        f"  floor: publish {run.publish_msgs_per_s:,.0f}/s,"
        f" consume {run.consume_msgs_per_s:,.0f}/s,"
        f" round trips {run.roundtrip_msgs_per_s:,.0f}/s (p50 {run.p50_ms:.1f} ms,"
        f" one in flight {run.p50_ms_one_in_flight:.1f} ms)"
    )


def _rally_line(run: RallyRun) -> str:
    per = run.per_task
    cost = ", ".join(
        f"{per.get(name) if per.get(name) is not None else 'n/a'} {name}"
        for name in ("publishes", "deliveries", "appends")
    )
    total = run.cpu_ms_per_task.get("total")
    cpu = f"{total:.2f} CPU ms" if total is not None else "CPU ms n/a"
    return (
        f"  rallypoint: {run.tasks_per_s:,.0f} tasks/s (p50 {run.p50_ms:.0f} ms,"
        f" p99 {run.p99_ms:.0f} ms, one in flight {_ms(run.p50_ms_one_in_flight)});"
        f" per task {cost}, {cpu}"
    )


def _celery_line(run: CeleryRun) -> str:
    one = run.p50_ms_one_in_flight
    return f"  celery: {run.tasks_per_s:,.0f} tasks/s (one in flight {_ms(one)})"


def _ms(value: float | None) -> str:
    return f"{value:.1f} ms" if value is not None else "-"


def quick_or_not(options: BenchOptions) -> BenchOptions:
    return options.quickened() if options.quick else replace(options)
