"""rallypoint end to end: no-op tasks submitted by a Client, run by SDK agents, results awaited.

Submit-to-result latency is timed per task, from just before ``submit`` to
the outcome reaching the client. Saturated: ``window`` tasks in flight at
once (a new one is submitted as each finishes) until ``tasks`` are done.
One in flight: ``sequential`` tasks, each submitted after the last finished.

Over the saturated window the bench also reads what the tasks cost: the
fleet's message and append counters (:mod:`workers.bench.tally`) and every
process's CPU time (:mod:`workers.bench.cpu`), each divided by the tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from sdk import Client
from workers.bench import cpu, tally
from workers.bench.agent_proc import CAPABILITY
from workers.bench.counting import install
from workers.bench.fleet import FleetShape, RunningFleet, rally_fleet
from workers.bench.memory import peak_rss_mib
from workers.bench.pacing import pipelined
from workers.bench.profile import Profilers
from workers.bench.stats import percentile, rate

log = structlog.get_logger(__name__)


class TaskDidNotSucceed(RuntimeError):
    """A no-op task ended in another state than succeeded: the figures would be wrong."""


@dataclass(frozen=True, slots=True)
class RallyOptions:
    tasks: int = 10_000
    window: int = 1_000
    sequential: int = 200  # one in flight; 0 to skip
    warmup: int = 200
    timeout_s: float = 600.0
    profile_dir: Path | None = None  # py-spy the fleet and this client while saturated


@dataclass(frozen=True, slots=True)
class RallyRun:
    replicas: int
    tasks: int
    tasks_per_s: float
    p50_ms: float
    p99_ms: float
    p50_ms_one_in_flight: float | None
    worker_peak_rss_mib: dict[str, float]
    agent_peak_rss_mib: dict[str, float]
    # tasks/s over each fifth of the saturated run: a falling series means the cost per
    # task grows with the history
    tasks_per_s_by_fifth: tuple[float, ...] = ()
    # what one task cost over the saturated window (tally.per_task, cpu.ms_per_task)
    per_task: dict[str, Any] = field(default_factory=dict)
    cpu_ms_per_task: dict[str, float | None] = field(default_factory=dict)


async def submit_and_wait(client: Client, i: int) -> float:
    """One task, submit to outcome, in seconds."""
    started = time.perf_counter()
    handle = await client.submit(CAPABILITY, {"i": i})
    outcome = await handle.outcome()
    elapsed = time.perf_counter() - started
    if outcome.state != "succeeded":
        raise TaskDidNotSucceed(f"task {handle.task_id} ended {outcome.state}: {outcome.error}")
    return elapsed


@dataclass(frozen=True, slots=True)
class Saturated:
    tasks_per_s: float
    latencies: list[float]  # seconds, per task
    finished_at: list[float]  # seconds since the start, in order of completion


async def saturated(client: Client, tasks: int, window: int) -> Saturated:
    """Tasks per second with ``window`` in flight, and every task's latency."""
    latencies: list[float] = []
    finished_at: list[float] = []
    started = time.perf_counter()

    async def one(i: int) -> None:
        latencies.append(await submit_and_wait(client, i))
        finished_at.append(time.perf_counter() - started)

    await pipelined(tasks, window, one)
    return Saturated(rate(tasks, time.perf_counter() - started), latencies, finished_at)


def rates_by_part(finished_at: list[float], parts: int = 5) -> tuple[float, ...]:
    """Completions per second in each of ``parts`` equal shares of the completions."""
    if len(finished_at) < parts:
        return ()
    out: list[float] = []
    previous_end = 0.0
    for k in range(parts):
        chunk = finished_at[len(finished_at) * k // parts : len(finished_at) * (k + 1) // parts]
        out.append(round(rate(len(chunk), chunk[-1] - previous_end), 1))
        previous_end = chunk[-1]
    return tuple(out)


async def one_in_flight(client: Client, tasks: int) -> list[float]:
    return [await submit_and_wait(client, i) for i in range(tasks)]


def _peaks(pids: dict[str, int]) -> dict[str, float]:
    peaks = {name: peak_rss_mib(pid) for name, pid in pids.items()}
    return {name: round(mib, 1) for name, mib in peaks.items() if mib is not None}


# after the warm-up and after the load: lets the last tasks' trailing messages (the
# outcome reaches the client before the task manager's events reach the allocator) land
# in the window they belong to
SETTLE_S = 0.5


async def measure(fleet: RunningFleet, options: RallyOptions, replicas: int) -> RallyRun:
    client = fleet.client
    install()  # this process's publishes: the client's

    async def warm(i: int) -> None:
        await submit_and_wait(client, -1 - i)

    await pipelined(options.warmup, options.window, warm)
    fleet.check_alive()
    await asyncio.sleep(SETTLE_S)
    ports = fleet.metrics_ports.values()
    kinds = cpu.pids_by_kind(
        fleet.worker_pids(),
        fleet.agent_pids().values(),
        os.getpid(),
        cpu.broker_pids(fleet.amqp_url),
    )
    counts_before = await tally.snapshot(ports)
    position_before = await fleet.store.last_position()
    cpu_before = cpu.sample(kinds)
    profiling: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if options.profile_dir is not None:
        pids = {**fleet.worker_pids(), **fleet.agent_pids(), "client": os.getpid()}
        profiling = Profilers(options.profile_dir, pids)
    with profiling:
        load = await saturated(client, options.tasks, options.window)
    cpu_after = cpu.sample(kinds)
    # VmHWM is the peak so far: read right after the load, while the processes live
    workers, agents = _peaks(fleet.worker_pids()), _peaks(fleet.agent_pids())
    await asyncio.sleep(SETTLE_S)
    counts_after = await tally.snapshot(ports)
    events = await fleet.store.last_position() - position_before
    delta = None if counts_before is None or counts_after is None else counts_after - counts_before
    sequential = await one_in_flight(client, options.sequential) if options.sequential else []
    fleet.check_alive()
    return RallyRun(
        replicas=replicas,
        tasks=options.tasks,
        tasks_per_s=load.tasks_per_s,
        p50_ms=percentile(load.latencies, 50) * 1000,
        p99_ms=percentile(load.latencies, 99) * 1000,
        p50_ms_one_in_flight=percentile(sequential, 50) * 1000 if sequential else None,
        worker_peak_rss_mib=workers,
        agent_peak_rss_mib=agents,
        tasks_per_s_by_fifth=rates_by_part(load.finished_at),
        per_task=tally.per_task(delta, options.tasks, events),
        cpu_ms_per_task=cpu.ms_per_task(cpu_before, cpu_after, options.tasks),
    )


async def run_rallypoint(amqp_url: str, shape: FleetShape, options: RallyOptions) -> RallyRun:
    """One run on a fresh fleet (namespace, store, processes), torn down afterwards."""
    async with rally_fleet(amqp_url, shape) as fleet:
        try:
            return await asyncio.wait_for(
                measure(fleet, options, shape.replicas), options.timeout_s
            )
        except TimeoutError:
            raise TimeoutError(
                f"rallypoint run did not finish within {options.timeout_s:.0f}s "
                f"({options.tasks} tasks, {shape.replicas} replica(s))"
            ) from None
