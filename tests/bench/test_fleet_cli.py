"""`rally bench fleet --json` against the real broker: every figure present, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(300)]

KEYS = (
    "tasks_per_s",
    "placement_ms",
    "heartbeat_lag_ms",
    "false_losses",
    "cpu_share_of_core",
    "inboxes",
    "broker_before",
    "broker_after_inboxes",
    "broker_after_run",
    "new_connection",
    "agents_side",
)


def test_small_fleet_json(amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "workers.cli.main", "bench", "fleet"),
            *("--agents", "8", "--processes", "2", "--tasks-per-s", "20", "--seconds", "8"),
            *("--json", "--out", str(out)),
        ],
        cwd=tmp_path,
        env={**os.environ, "RALLY_AMQP_URL": amqp_url},
        capture_output=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    report = json.loads(proc.stdout)
    assert report["errors"] == []
    for key in KEYS:
        assert key in report, key
    assert report["false_losses"] == 0
    assert report["tasks_succeeded"] == report["tasks_submitted"] > 0
    assert report["new_connection"]["ok"] is True
    assert report["agents_side"]["heartbeats"] > 0
    assert list(out.glob("fleet-8-*.json"))
