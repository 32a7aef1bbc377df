"""`rally bench --quick --json`: one JSON object with every key, and the files beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures.store import pg_server_url  # noqa: F401 - the fixture, reused

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.slow]

FIGURES = {
    "floor": ("roundtrip_msgs_per_s", "publish_msgs_per_s", "consume_msgs_per_s", "p50_ms"),
    "rallypoint": ("tasks_per_s", "p50_ms", "p99_ms", "p50_ms_one_in_flight"),
    "celery": ("tasks_per_s", "p50_ms_one_in_flight"),
    "rallypoint.per_task": ("publishes", "deliveries", "appends", "unroutable"),
    "rallypoint.cpu_ms_per_task": ("tasks", "allocator", "registry", "agent", "client"),
}


def test_quick_json_has_every_key_and_writes_the_results(
    amqp_url: str,
    pg_server_url: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "workers.cli.main", "bench", "--quick", "--json"),
            *("--tasks", "40", "--scaling", "1,2", "--out", str(out), "--pg", pg_server_url),
        ],
        cwd=tmp_path,
        env={**os.environ, "RALLY_AMQP_URL": amqp_url},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    for section, names in FIGURES.items():
        part = report
        for step in section.split("."):
            part = part[step]
        for name in names:
            for key in (name, f"{name}_min", f"{name}_max"):
                assert part[key] is not None, f"{section}.{key}"
    assert "broker" in report["rallypoint"]["cpu_ms_per_task"]  # None where not readable
    for key in ("scaling", "store", "memory", "machine", "ratios", "options", "targets"):
        assert key in report
    assert [p["replicas"] for p in report["scaling"]["points"]] == [1, 2]
    assert all(p["tasks_per_s"] > 0 for p in report["scaling"]["points"])
    for adapter in ("sqlite", "postgres"):
        for figure in ("single_per_s", "batch_per_s", "group_per_s"):
            assert report["store"][adapter][figure] > 0, f"store.{adapter}.{figure}"
    assert report["memory"]["worker_replica_peak_rss_mib"] > 0
    assert report["memory"]["agent_peak_rss_mib"] > 0
    assert report["machine"]["cores"] >= 1
    assert report["machine"]["rabbitmq"]
    assert report["ratios"]["rallypoint_vs_celery"] > 0
    assert report["ratios"]["rallypoint_vs_floor_roundtrip"] > 0
    assert report["options"]["quick"] is True
    assert report["errors"] == []
    stamped = [p for p in out.glob("*.json") if p.name != "latest.json"]
    assert len(stamped) == 1
    assert json.loads((out / "latest.json").read_text()) == report
    assert (out / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
