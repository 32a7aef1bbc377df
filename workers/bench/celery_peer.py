"""The peer: the same no-op tasks through Celery on the same RabbitMQ, results awaited.

The worker is a subprocess (``celery -A workers.bench.celery_app worker``) on
a queue and exchange named for this run alone, deleted afterwards; remote
control is off, so it leaves no pidbox queues either. The client is Celery's
own, synchronous: every task is published (each waiting for its confirm), then
every result is awaited through the rpc backend. Then ``sequential`` tasks go
one at a time, each timed from publish to result, as rallypoint's and the
floor's one in flight. Runs in a thread of the bench.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from workers.bench.celery_app import (
    BROKER_ENV,
    NOOP,
    QUEUE_ENV,
    celery_broker_url,
    exchanges,
    make_app,
)
from workers.bench.memory import peak_rss_mib
from workers.bench.stats import percentile, rate
from workers.runtime.procs import stop_process

log = structlog.get_logger(__name__)

POOLS = ("solo", "threads", "prefork")
# the fastest for no-op tasks on the 2-core bench machine: see docs/benchmarks.md
DEFAULT_POOL = "threads"
DEFAULT_CONCURRENCY = {"solo": 1, "threads": 4, "prefork": 2}
ONE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class CeleryOptions:
    tasks: int = 10_000
    pool: str = DEFAULT_POOL
    concurrency: int | None = None  # None: DEFAULT_CONCURRENCY of the pool
    warmup: int = 200
    sequential: int = 200  # one in flight, for p50_ms_one_in_flight; 0 to skip
    timeout_s: float = 600.0
    scratch: Path = Path("var") / "bench"

    @property
    def workers(self) -> int:
        return self.concurrency or DEFAULT_CONCURRENCY[self.pool]


@dataclass(frozen=True, slots=True)
class CeleryRun:
    pool: str
    concurrency: int
    tasks: int
    tasks_per_s: float
    worker_peak_rss_mib: float | None
    p50_ms_one_in_flight: float | None = None


def worker_command(pool: str, concurrency: int, queue: str) -> list[str]:
    return [
        *(sys.executable, "-m", "celery", "-A", "workers.bench.celery_worker", "worker"),
        *("--pool", pool, "--concurrency", str(concurrency), "--queues", queue),
        *("--loglevel", "WARNING", "--hostname", f"{queue}@%h"),
        *("--without-gossip", "--without-mingle"),
    ]


class Cancelled(Exception):
    """The bench was interrupted while this run was in its thread."""


def run_celery(
    amqp_url: str, options: CeleryOptions, cancel: threading.Event | None = None
) -> CeleryRun:
    """One run: a fresh worker on a fresh queue, stopped and deleted afterwards."""
    cancel = cancel or threading.Event()
    if options.pool not in POOLS:
        raise ValueError(f"unknown Celery pool {options.pool!r}: choose from {', '.join(POOLS)}")
    queue = f"bench-{uuid.uuid4().hex[:8]}.celery"
    broker_url = celery_broker_url(amqp_url)
    app = make_app(broker_url, queue)
    options.scratch.mkdir(parents=True, exist_ok=True)
    log_path = options.scratch / f"{queue}.log"
    env = {**os.environ, BROKER_ENV: broker_url, QUEUE_ENV: queue}
    with open(log_path, "wb") as log_file:
        worker = subprocess.Popen(
            worker_command(options.pool, options.workers, queue),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ok = False
    try:
        # the worker is up once one task comes back
        _await_all(app, [app.send_task(NOOP)], worker, 60.0, cancel)
        _await_all(app, _send(app, options.warmup, cancel), worker, 60.0, cancel)
        started = time.perf_counter()
        results = _send(app, options.tasks, cancel)
        _await_all(app, results, worker, options.timeout_s, cancel)
        tasks_per_s = rate(options.tasks, time.perf_counter() - started)
        peak = _tree_peak_mib(worker.pid)
        one = [_one(app, worker, cancel) for _ in range(options.sequential)]
        ok = True
        return CeleryRun(
            options.pool,
            options.workers,
            options.tasks,
            tasks_per_s,
            peak,
            percentile(one, 50) * 1000 if one else None,
        )
    finally:
        # every task is done by now; a warm shutdown takes Celery seconds (its loop wakes
        # slowly), so it gets two before the process group is killed
        stop_process(worker, timeout=2.0)
        try:
            _delete(app, queue)
        finally:
            app.close()
        if ok:
            log_path.unlink(missing_ok=True)
        else:
            log.warning("bench.celery_log_kept", path=str(log_path))


def _send(app: Any, count: int, cancel: threading.Event) -> list[Any]:
    results = []
    for i in range(count):
        if i % 100 == 0 and cancel.is_set():
            raise Cancelled
        results.append(app.send_task(NOOP))
    return results


def _one(app: Any, worker: subprocess.Popen[bytes], cancel: threading.Event) -> float:
    """One task alone, publish to result, in seconds."""
    started = time.perf_counter()
    _await_all(app, [app.send_task(NOOP)], worker, ONE_TIMEOUT_S, cancel)
    return time.perf_counter() - started


def _await_all(
    app: Any,
    results: list[Any],
    worker: subprocess.Popen[bytes],
    timeout: float,
    cancel: threading.Event,
) -> None:
    """Every result, polling: a dead worker or a Ctrl-C is seen at once, not after ``timeout``."""
    celery_timeout = importlib.import_module("celery.exceptions").TimeoutError
    pending = importlib.import_module("celery.result").ResultSet(results, app=app)
    deadline = time.monotonic() + timeout
    while True:
        if cancel.is_set():
            raise Cancelled
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited {worker.returncode}; see var/bench/")
        try:
            pending.get(timeout=min(1.0, max(0.1, deadline - time.monotonic())), propagate=True)
            return
        except celery_timeout:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Celery did not return {len(results)} results within {timeout:.0f}s"
                ) from None


def _tree_peak_mib(pid: int) -> float | None:
    """The worker's peak RSS plus its pool children's (prefork forks them)."""
    peaks = [peak_rss_mib(pid)]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        peaks += [peak_rss_mib(int(c)) for c in children.read_text().split()]
    known = [p for p in peaks if p is not None]
    return round(sum(known), 1) if known else None


def _delete(app: Any, queue: str) -> None:
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_delete(queue)
        for exchange in exchanges(queue):
            channel.exchange_delete(exchange)
