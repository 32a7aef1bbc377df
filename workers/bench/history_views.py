"""What a user waits for on an old history: CLI views, the dashboard's overview, store bytes.

Every view is timed the way a user meets it: the whole command as a new
process (``python -m workers.cli.main ...``, what ``rally`` runs), start-up
included, median of ``runs``. The dashboard is ``rally dashboard --port 0``:
how long until its overview has read the whole history, then one
``/api/overview`` request, median of ``runs``. Whatever the commands gain later
(read models, paging) is measured without a change here; ``task list`` is
asked with ``--limit`` where the command has it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from workers.bench.stats import median
from workers.store.postgres import split_schema

STATES = ("running", "pending", "dead")  # small answers at every age: the cost is the history's


@dataclass(frozen=True, slots=True)
class Timing:
    median_s: float | None
    runs_s: tuple[float, ...] = ()
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "median_s": None if self.median_s is None else round(self.median_s, 3),
            "runs_s": [round(s, 3) for s in self.runs_s],
            "error": self.error,
        }


def rally(*args: str) -> list[str]:
    return [sys.executable, "-m", "workers.cli.main", *args]


def timed(command: list[str], env: dict[str, str], runs: int, timeout_s: float) -> Timing:
    """Wall time of the whole command, ``runs`` times; the first failure is the answer."""
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                command,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Timing(None, tuple(times), f"over {timeout_s:.0f}s")
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip()[-300:]
            return Timing(None, tuple(times), f"exit {proc.returncode}: {tail}")
        times.append(elapsed)
    return Timing(median(times), tuple(times))


def task_list_has(flag: str, env: dict[str, str]) -> bool:
    """Whether this release's `rally task list` takes ``flag`` (read models add paging)."""
    proc = subprocess.run(
        rally("task", "list", "--help"), env=env, capture_output=True, text=True, check=False
    )
    return flag in proc.stdout


def cli_views(
    store_url: str, task_id: str, env: dict[str, str], runs: int = 3, timeout_s: float = 600.0
) -> dict[str, Timing]:
    """``task list`` by state, ``task show``, ``agents``: each a new process, like a user's."""
    store = ("--store", store_url)
    out: dict[str, Timing] = {}
    for state in STATES:
        out[f"task_list_{state}"] = timed(
            rally("task", "list", *store, "--state", state), env, runs, timeout_s
        )
    if task_list_has("--limit", env):
        command = rally("task", "list", *store, "--state", "succeeded", "--limit", "50")
        out["task_list_succeeded_limit_50"] = timed(command, env, runs, timeout_s)
    out["task_show"] = timed(rally("task", "show", *store, task_id), env, runs, timeout_s)
    out["agents"] = timed(rally("agents", *store), env, runs, timeout_s)
    return out


def _get_json(url: str, timeout_s: float = 30.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def dashboard(
    store_url: str,
    last_position: int,
    env: dict[str, str],
    run_dir: Path,
    runs: int = 3,
    timeout_s: float = 600.0,
) -> dict[str, Timing]:
    """``current``: `rally dashboard` started → an overview with the whole history read;
    ``overview``: one ``/api/overview`` request after that."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "dashboard.log"
    command = rally("dashboard", "--port", "0", "--store", store_url, "--refresh", "1")
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log)
    try:
        return _time_dashboard(proc, started, last_position, runs, timeout_s, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _time_dashboard(
    proc: subprocess.Popen[bytes],
    started: float,
    last_position: int,
    runs: int,
    timeout_s: float,
    log_path: Path,
) -> dict[str, Timing]:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode(errors="replace")  # "rally dashboard: http://..."
    if "http://" not in line:
        error = f"no URL printed ({line.strip()!r}); see {log_path}"
        return {"current": Timing(None, (), error), "overview": Timing(None, (), error)}
    base = line.split("http://", 1)[1].split()[0].rstrip("/")
    url = f"http://{base}/api/overview"
    deadline = started + timeout_s
    while True:
        try:
            store = _get_json(url)["store"]
        except OSError:
            store = {"behind": True, "position": 0}
        if not store["behind"] and store["position"] >= last_position:
            break
        if time.perf_counter() > deadline or proc.poll() is not None:
            error = f"overview not current within {timeout_s:.0f}s; see {log_path}"
            return {"current": Timing(None, (), error), "overview": Timing(None, (), error)}
        time.sleep(0.05)
    current = Timing(time.perf_counter() - started, (time.perf_counter() - started,))
    times: list[float] = []
    for _ in range(runs):
        begun = time.perf_counter()
        _get_json(url)
        times.append(time.perf_counter() - begun)
    return {"current": current, "overview": Timing(median(times), tuple(times))}


def sqlite_path(store_url: str) -> Path | None:
    if store_url.startswith("sqlite:///"):
        return Path(store_url.removeprefix("sqlite:///"))
    if "://" not in store_url:
        return Path(store_url)
    return None


def sqlite_bytes(path: Path) -> int:
    files = (path, Path(f"{path}-wal"))
    return sum(os.path.getsize(f) for f in files if f.exists())


async def store_bytes(store_url: str) -> int:
    """The store's size on disk: the SQLite file with its WAL, or every relation of the
    PostgreSQL schema with its indexes and TOAST (``pg_total_relation_size``)."""
    path = sqlite_path(store_url)
    if path is not None:
        return sqlite_bytes(path)
    dsn, schema = split_schema(store_url)
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind IN ('r', 'm', 'p')",
            schema or "public",
        )
    finally:
        await conn.close()
    return int(size)
