"""The verdicts as a person reads them (a table) or a program does (JSON, one object a line)."""

from __future__ import annotations

import json

from workers.conformance.runner import Verdict

MARK = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


def line(verdict: Verdict) -> str:
    mark = MARK[verdict.status]
    return f"{verdict.scenario:<18}  {mark:<4}  {verdict.seconds:>5.1f}s  {verdict.reason}"


def header() -> str:
    return f"{'SCENARIO':<18}  {'':<4}  {'TIME':>6}  REASON"


def json_line(verdict: Verdict) -> str:
    return json.dumps(verdict.as_json())


def footer(verdicts: list[Verdict], log_dir: str) -> str:
    passed = sum(v.passed for v in verdicts)
    text = f"{passed}/{len(verdicts)} scenarios passed"
    if passed < len(verdicts):
        logs = sorted({v.agent_log for v in verdicts if v.agent_log})
        text += f"; logs in {log_dir}" + (f" (agent: {', '.join(logs)})" if logs else "")
    return text
