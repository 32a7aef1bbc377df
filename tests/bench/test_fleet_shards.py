"""`rally bench fleet --registry-shards 2`: each shard a process of its own, measured, and
nothing of the run left in the broker (the inboxes and the DLQ they share included)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from workers.bench.fleet_run import fd_limit


def test_the_fd_limit_is_the_processes_own() -> None:
    assert fd_limit([os.getpid()]) == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert fd_limit([]) is None


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_registry_shards_run_and_are_measured(amqp_url: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "workers.cli.main", "bench", "fleet", "--json"),
            *("--agents", "8", "--processes", "2", "--tasks-per-s", "20", "--seconds", "6"),
            *("--registry-shards", "2", "--out", str(tmp_path)),
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
    assert report["options"]["registry_shards"] == 2
    assert {"registry-0", "registry-1-0"} <= set(report["cpu_share_of_core"])
    assert report["false_losses"] == 0
    assert report["tasks_succeeded"] == report["tasks_submitted"] > 0
