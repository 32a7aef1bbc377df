"""The whole fleet, end to end: separate worker processes, SDK agents, a crash, a verdict.

The acceptance run of the workers issue: 2,000 tasks over 20 agents with mixed
capabilities, dependency chains, a resource of capacity 2 and a poison task,
3 replicas of every worker, one agent SIGKILLed mid-run. Everything is checked
from the event history alone (workers/history_check.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from workers.demo.run import DemoOptions, run_demo
from workers.demo.scenario import GPU, GPU_CAPACITY

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def test_two_thousand_tasks_three_replicas_and_a_killed_agent(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = DemoOptions(replicas=3, agents=20, tasks=2000, timeout_s=240, amqp_url=amqp_url)
    result = await run_demo(options, lambda progress: None)
    report, summary = result.report, result.summary
    assert report.violations == []  # one terminal state each, no capacity exceeded, re-placed
    assert result.mismatches == []  # every task in the state the scenario expects
    assert summary["tasks_submitted"] == 2000
    assert summary["dead"] == 1
    assert summary["cancelled"] == 1
    assert report.terminal["TaskSucceeded"] == 1998  # no task succeeded twice
    assert report.max_resource_use.get(GPU, 0) <= GPU_CAPACITY
    assert report.max_resource_use.get(GPU, 0) >= 1
    assert summary["dead_letters"] >= 3
    assert result.ok


def test_rally_demo_json_and_exit_code(amqp_url: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "workers.cli.main",
            "demo",
            "--json",
            "--tasks",
            "200",
            "--agents",
            "6",
            "--replicas",
            "1",
        ],
        cwd=tmp_path,
        env={**os.environ, "RALLY_AMQP_URL": amqp_url},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    for key in (
        "tasks_submitted",
        "succeeded",
        "failed",
        "cancelled",
        "dead",
        "reassigned",
        "dead_letters",
        "elapsed_s",
        "tasks_per_s",
    ):
        assert key in summary
    assert summary["tasks_submitted"] == 200
    assert summary["succeeded"] + summary["cancelled"] + summary["dead"] == 200
    assert processes_with_env(f"RALLY_NAMESPACE={summary['namespace']}") == []  # none left


def processes_with_env(marker: str) -> list[int]:
    """PIDs whose environment holds ``marker`` (the demo passes its namespace that way)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ.split(b"\0"):
            found.append(int(proc.name))
    return found


@pytest.mark.postgres
def test_demo_on_postgresql_leaves_its_history_and_dead_letters_to_explore(
    amqp_url: str, tmp_path: Path
) -> None:
    """`RALLY_STORE_URL=postgresql://... rally demo` runs there (a schema of its own), and the
    commands its summary prints find the dead letters and the poison task after it ended."""
    pg = os.environ.get("RALLY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    env = {**os.environ, "RALLY_AMQP_URL": amqp_url, "RALLY_STORE_URL": pg}
    demo = [sys.executable, "-m", "workers.cli.main", "demo", "--json"]
    small = ["--tasks", "100", "--agents", "4", "--replicas", "1"]
    proc = subprocess.run(
        demo + small, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["store_url"].startswith(pg.split("?")[0])
    assert "schema=demo_" in summary["store_url"]
    explore = summary["explore"]

    def rally(command: str) -> str:
        # the summary's command, as a user would paste it into a shell
        done = subprocess.run(
            ["bash", "-c", command.replace("rally ", f"{sys.executable} -m workers.cli.main ", 1)],
            cwd=tmp_path,
            env={**os.environ, "RALLY_AMQP_URL": amqp_url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    listed = rally(explore["dead_letters"])
    for reason in ("malformed", "invalid", "unknown_type"):
        assert reason in listed
    assert "TaskDead" in rally(explore["poison_timeline"])
    asyncio.run(_drop_schema(pg, summary["store_url"].rsplit("schema=", 1)[1]))


async def _drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url.split("?")[0])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
