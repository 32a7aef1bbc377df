"""Ratios and targets of `rally bench history`, from figures alone."""

from __future__ import annotations

from typing import Any

from workers.bench.history_report import FIGURES, format_table, ratios, targets
from workers.bench.history_retention import RetentionRun


def _size(tasks: int, seconds: float, tasks_per_s: float, failover_s: float) -> dict[str, Any]:
    timing = {"median_s": seconds, "runs_s": [seconds], "error": None}
    return {
        "tasks": tasks,
        "views": {"task_list_running": timing, "task_show": timing, "agents": timing},
        "fleet": {
            "registry_start_s": seconds,
            "allocator_start_s": seconds,
            "failover_s": failover_s,
            "tasks_per_s": tasks_per_s,
        },
        "store": {"bytes": tasks * 3000, "bytes_per_task": 3000},
    }


def test_ratios_are_the_largest_over_the_smallest() -> None:
    sizes = [_size(1000, 0.5, 200, 0.4), _size(100_000, 1.0, 190, 0.6)]
    found = ratios(sizes)
    assert set(found) == set(FIGURES)
    assert found["task_list"] == 2.0
    assert found["throughput"] == 0.95
    assert found["bytes_per_task"] == 1.0
    assert found["dashboard_current"] is None  # not measured
    met = targets(sizes, found, {"flat": True})["met"]
    assert met["views_and_startups"] is False
    assert set(met["over_limit"]) == {
        "task_list",
        "task_show",
        "agents",
        "registry_start",
        "allocator_start",
    }
    assert met["throughput"] is True
    assert met["failover"] is True
    assert met["retention_flat"] is True


def test_targets_met_and_table() -> None:
    sizes = [_size(1000, 0.5, 200, 0.4), _size(100_000, 0.6, 150, 5.0)]
    found = ratios(sizes)
    report: dict[str, Any] = {
        "history": {
            "sizes": sizes,
            "ratios": found,
            "targets": targets(sizes, found, None),
            "retention": None,
            "errors": [],
        }
    }
    met = report["history"]["targets"]["met"]
    assert met["views_and_startups"] is True
    assert met["throughput"] is False
    assert met["failover"] is False
    assert met["retention_flat"] is None
    table = format_table(report)
    assert "| task list --state running | 0.50 s | 0.60 s | 1.2× |" in table
    assert "dashboard" not in table.split("targets:")[0]  # rows never measured are left out


def test_one_size_has_no_ratios() -> None:
    assert all(v is None for v in ratios([_size(10, 1.0, 1.0, 1.0)]).values())


def test_retention_is_judged_only_when_deleting_can_begin_in_time() -> None:
    samples = [
        {"t_s": float(t), "bytes": 1000.0 + t, "events": 0.0, "tasks": 0.0} for t in range(9)
    ]
    short = RetentionRun("30s", True, 180.0, 40.0, effective_s=30.0, samples=samples)
    assert short.as_json()["flat"] is True
    assert short.as_json()["not_measurable"] is None
    raised = RetentionRun("30s", True, 180.0, 40.0, effective_s=2100.0, samples=samples)
    assert raised.as_json()["flat"] is None  # 35 min cannot pass in a 3-minute run
    assert "2100 s" in raised.as_json()["not_measurable"]
    none = RetentionRun("30s", False, 180.0, 40.0, effective_s=None, samples=samples)
    assert none.as_json()["flat"] is None
