"""Does the store stay flat under a steady load with retention on?

A fresh store, the whole fleet (every worker ``WORKERS`` lists) with
``RALLY_RETENTION`` set short, two no-op agents, and tasks submitted at a
steady rate for ``duration_s``; the store's size is sampled every
``sample_every_s``. Flat means the size at the end is within 10% of the size a
third of the way in (by then the first tasks are past retention and deleting
has begun); without retention the size grows with the tasks.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.errors import BrokerError
from sdk import Client
from workers.bench.history_fleet import consuming, fleet_env, until
from workers.bench.history_views import store_bytes
from workers.bench.rallypoint import submit_and_wait
from workers.runtime.settings import WORKERS
from workers.store.base import EventStore

FLAT_WITHIN = 1.10
SETTING = "RALLY_RETENTION"


def effective_retention_s(env: dict[str, str]) -> float | None:
    """How long an ended task really stays under ``env``, by this release's own rule (it
    raises a short ``RALLY_RETENTION`` to the duplicate horizon); None: no retention here."""
    try:
        from workers.retention.policy import RetentionSettings
    except ImportError:
        return None
    effective = RetentionSettings.from_env(env).effective_retention
    return None if effective is None else effective.total_seconds()


def retention_setting_found(root: Path | None = None) -> bool:
    """Whether this release reads ``RALLY_RETENTION`` anywhere in its workers (it may not yet)."""
    root = root or Path(__file__).resolve().parents[1]
    return any(
        SETTING in path.read_text(errors="replace")
        for path in root.rglob("*.py")
        if "bench" not in str(path.relative_to(root))  # this bench names it, in its help too
    )


@dataclass
class RetentionRun:
    retention: str
    setting_found: bool
    duration_s: float
    rate_per_s: float
    effective_s: float | None = None  # the retention the release applies (None: none)
    samples: list[dict[str, float]] = field(default_factory=list)  # t_s, bytes, events, tasks
    errors: list[str] = field(default_factory=list)

    def growth(self) -> float | None:
        """Size at the end over size a third of the way in."""
        if len(self.samples) < 3:
            return None
        third = self.samples[len(self.samples) // 3]["bytes"]
        return round(self.samples[-1]["bytes"] / third, 3) if third else None

    def as_json(self) -> dict[str, Any]:
        growth = self.growth()
        # deleting must start by a third of the run for the end/third ratio to say anything
        measurable = self.effective_s is not None and self.effective_s < self.duration_s / 3
        why = None
        if not measurable:
            why = (
                "this release has no retention"
                if self.effective_s is None
                else f"the effective retention ({self.effective_s:.0f} s) is longer than a third "
                f"of the run ({self.duration_s:.0f} s): nothing can leave the store in time"
            )
        return {
            "retention": self.retention,
            "setting_found": self.setting_found,
            "effective_retention_s": self.effective_s,
            "not_measurable": why,
            "duration_s": self.duration_s,
            "rate_per_s": self.rate_per_s,
            "samples": self.samples,
            "growth_end_over_third": growth,
            "flat": None if growth is None or not measurable else growth <= FLAT_WITHIN,
            "errors": self.errors,
        }


async def retention_run(
    amqp_url: str,
    store_url: str,
    run_dir: Path,
    *,
    retention: str = "30s",
    duration_s: float = 180.0,
    rate_per_s: float = 40.0,
    sample_every_s: float = 10.0,
    progress: Callable[[str], None] = lambda _: None,
) -> RetentionRun:
    run = RetentionRun(retention, retention_setting_found(), duration_s, rate_per_s)
    extra = {
        SETTING: retention,
        f"{SETTING}_INTERVAL": f"{sample_every_s:g}s",  # the job runs as often as we look
        "RALLY_ARCHIVE": str(run_dir / "archive"),  # never the caller's own ./var/archive
        # retention never undercuts the duplicate horizon: ask for it as short, too (the
        # release raises it to its floor)
        "RALLY_PROCESSED_HORIZON": retention,
    }
    try:
        run.effective_s = effective_retention_s({**os.environ, **extra})
    except ValueError as exc:  # a setting this release cannot read
        run.errors.append(f"{SETTING}={retention}: {exc}")
    try:
        async with fleet_env(amqp_url, store_url, run_dir, extra) as (procs, client, store, conn):
            for worker in WORKERS:
                procs.worker(worker)
            for worker in WORKERS:
                await consuming(conn, worker, procs, 120.0)
            ns = procs.env["RALLY_NAMESPACE"]
            procs.agent(f"{ns}-agent-0")
            procs.agent(f"{ns}-agent-1")
            await until("a first task", lambda: _one(client), procs, 120.0)
            await _steady(
                run, client, store, store_url, sample_every_s, progress, procs.check_alive
            )
    except (TimeoutError, RuntimeError, OSError, BrokerError) as exc:
        run.errors.append(f"{type(exc).__name__}: {exc}")
    return run


async def _one(client: Client) -> bool:
    await asyncio.wait_for(submit_and_wait(client, -1), 60)
    return True


async def _steady(
    run: RetentionRun,
    client: Client,
    store: EventStore,
    store_url: str,
    sample_every_s: float,
    progress: Callable[[str], None],
    check_alive: Callable[[], None],
) -> None:
    started = time.monotonic()
    in_flight: set[asyncio.Task[float]] = set()
    submitted = 0
    next_sample = 0.0
    failures: list[BaseException] = []

    def done(task: asyncio.Task[float]) -> None:
        in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # type: ignore[arg-type]

    try:
        while (elapsed := time.monotonic() - started) < run.duration_s:
            while submitted < elapsed * run.rate_per_s:
                task = asyncio.create_task(submit_and_wait(client, submitted))
                task.add_done_callback(done)
                in_flight.add(task)
                submitted += 1
            if elapsed >= next_sample:
                size = await store_bytes(store_url)
                sample = {
                    "t_s": round(elapsed, 1),
                    "bytes": size,
                    "events": await store.last_position(),
                    "tasks": submitted,
                }
                run.samples.append(sample)
                progress(f"retention: {elapsed:.0f}s, {submitted} tasks, {size / 1e6:.1f} MB")
                next_sample += sample_every_s
                check_alive()
            if failures:
                raise RuntimeError(f"a task of the steady load failed: {failures[0]}")
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*in_flight), 60)
    finally:
        for task in in_flight:
            task.cancel()
