"""`rally conformance` against the Python SDK's reference agent: every scenario passes.

And the kit is not a rubber stamp: an agent that never starts fails, with a reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.support.paths import ROOT
from workers.conformance.report import footer, line
from workers.conformance.runner import SCENARIOS, UnknownScenario, Verdict, choose

REFERENCE = f"{sys.executable} -m workers.conformance.reference_agent"


def conformance(*args: str, timeout: float) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "conformance", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    rows = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    return done.returncode, rows, done.stderr


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(300)
def test_the_python_sdk_passes_every_scenario() -> None:
    code, rows, stderr = conformance("--agent-cmd", REFERENCE, timeout=280)
    by_name = {row["scenario"]: row for row in rows}
    assert list(by_name) == list(SCENARIOS), stderr
    if shutil.which("rabbitmqctl") is None:  # provisioning needs it; say so, do not hide it
        assert by_name.pop("provisioned")["status"] == "skipped"
    failed = {name: row["reason"] for name, row in by_name.items() if not row["passed"]}
    assert failed == {}, stderr
    if len(by_name) == len(SCENARIOS):
        assert code == 0


@pytest.mark.broker
@pytest.mark.timeout(120)
def test_an_agent_that_never_registers_fails_with_a_reason() -> None:
    code, rows, _ = conformance(
        "--agent-cmd", "echo no agent here; exit 3", "--scenarios", "assignment", timeout=100
    )
    assert code == 1
    assert [row["status"] for row in rows] == ["failed"]
    assert "exited (3) before registering" in rows[0]["reason"]
    assert rows[0]["agent_log"]


def test_scenarios_are_chosen_by_name() -> None:
    assert choose(None) == list(SCENARIOS)
    assert choose("drain, timeout") == ["drain", "timeout"]
    with pytest.raises(UnknownScenario, match="unknown scenario nope"):
        choose("drain,nope")


def test_the_table_says_why_and_where_the_logs_are() -> None:
    failed = Verdict("drain", "failed", "a running task was handed back", 3.2, "/tmp/a.log")
    passed = Verdict("timeout", "passed", "failed on time-out", 4.0)
    assert "FAIL" in line(failed)
    assert "a running task was handed back" in line(failed)
    assert footer([failed, passed], "/tmp/run") == (
        "1/2 scenarios passed; logs in /tmp/run (agent: /tmp/a.log)"
    )
    assert json.loads(json.dumps(failed.as_json()))["passed"] is False
