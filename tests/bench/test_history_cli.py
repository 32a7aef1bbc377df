"""`rally bench history --quick --json`: one JSON object with every key, and the files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.bench.history_report import FIGURES

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(600)]

SIZE_KEYS = {
    "build": ("events", "seconds", "open_tasks", "violations", "submitted"),
    "store": ("bytes", "bytes_per_task"),
    "views": (
        "task_list_running",
        "task_list_pending",
        "task_list_dead",
        "task_show",
        "agents",
        "dashboard_current",
        "dashboard_overview",
    ),
    "fleet": ("registry_start_s", "allocator_start_s", "failover_s", "tasks_per_s"),
}


def test_quick_json_has_every_key(amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "workers.cli.main", "bench", "history"),
            *("--base", "20", "--sizes", "1,2", "--quick", "--json", "--out", str(out)),
        ],
        cwd=tmp_path,
        env={**os.environ, "RALLY_AMQP_URL": amqp_url},
        capture_output=True,
        text=True,
        timeout=580,
    )
    report = json.loads(proc.stdout)["history"]
    assert proc.returncode == 0, (report["errors"], proc.stderr[-3000:])
    assert [s["tasks"] for s in report["sizes"]] == [20, 40]
    for size in report["sizes"]:
        for section, names in SIZE_KEYS.items():
            for name in names:
                assert size[section][name] is not None, f"{size['tasks']}: {section}.{name}"
        assert size["build"]["violations"] == 0
        assert size["build"]["submitted"] == size["tasks"]
        for timing in size["views"].values():
            assert timing["error"] is None
            assert timing["median_s"] > 0
    assert set(report["ratios"]) == set(FIGURES)
    for name in ("task_list", "task_show", "agents", "allocator_start", "throughput"):
        assert report["ratios"][name] is not None, name
    met = report["targets"]["met"]
    for key in ("views_and_startups", "throughput", "failover", "retention_flat"):
        assert key in met
    assert len(report["retention"]["samples"]) >= 3
    assert report["errors"] == []
    written = json.loads((out / "history-latest.json").read_text())
    assert written["history"]["sizes"] == report["sizes"]
    assert not (out / "latest.json").exists()  # `rally bench`'s own results are left alone
