"""The `rally bench history` report: figures per size, ratios largest/smallest, the targets.

Issue 16's targets, as ratios of the largest history to the smallest: every
view and every start-up within 1.5×, throughput at least 0.9×, failover under
1 s, the store's size flat under a steady load with retention on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workers.bench.results import timestamp

VIEW_LIMIT = 1.5
THROUGHPUT_AT_LEAST = 0.9
FAILOVER_UNDER_S = 1.0

# ratio name -> where the figure is in one size's JSON; costs (lower is better) unless noted
FIGURES: dict[str, tuple[str, ...]] = {
    "task_list": ("views", "task_list_running", "median_s"),
    "task_list_pending": ("views", "task_list_pending", "median_s"),
    "task_list_dead": ("views", "task_list_dead", "median_s"),
    "task_list_succeeded_limit_50": ("views", "task_list_succeeded_limit_50", "median_s"),
    "task_show": ("views", "task_show", "median_s"),
    "agents": ("views", "agents", "median_s"),
    "dashboard_current": ("views", "dashboard_current", "median_s"),
    "dashboard_overview": ("views", "dashboard_overview", "median_s"),
    "registry_start": ("fleet", "registry_start_s"),
    "allocator_start": ("fleet", "allocator_start_s"),
    "failover": ("fleet", "failover_s"),
    "throughput": ("fleet", "tasks_per_s"),
    "bytes_per_task": ("store", "bytes_per_task"),
}
VIEWS_AND_STARTUPS = tuple(
    k for k in FIGURES if k not in ("failover", "throughput", "bytes_per_task")
)


def figure(size: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = size
    for step in path:
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return float(value) if isinstance(value, int | float) else None


def ratios(sizes: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each figure at the largest history over the same at the smallest."""
    out: dict[str, float | None] = {}
    if len(sizes) < 2:
        return dict.fromkeys(FIGURES)
    first, last = sizes[0], sizes[-1]
    for name, path in FIGURES.items():
        a, b = figure(first, path), figure(last, path)
        out[name] = round(b / a, 3) if a and b is not None else None
    return out


def targets(
    sizes: list[dict[str, Any]], found: dict[str, float | None], retention: dict[str, Any] | None
) -> dict[str, Any]:
    """Each target and whether it is met (None: not measured)."""
    views: dict[str, float] = {}
    for name in VIEWS_AND_STARTUPS:
        value = found.get(name)
        if value is not None:
            views[name] = value
    failovers = [figure(s, FIGURES["failover"]) for s in sizes]
    measured = [f for f in failovers if f is not None]
    throughput = found.get("throughput")
    return {
        "views_and_startups_within": VIEW_LIMIT,
        "throughput_at_least": THROUGHPUT_AT_LEAST,
        "failover_under_s": FAILOVER_UNDER_S,
        "met": {
            "views_and_startups": all(v <= VIEW_LIMIT for v in views.values()) if views else None,
            "over_limit": sorted(k for k, v in views.items() if v > VIEW_LIMIT),
            "throughput": None if throughput is None else throughput >= THROUGHPUT_AT_LEAST,
            "failover": max(measured) < FAILOVER_UNDER_S if measured else None,
            "retention_flat": None if retention is None else retention.get("flat"),
        },
    }


def _cell(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "/s":
        return f"{value:.0f}/s"
    return f"{value:,.0f} {unit}".strip()


ROWS: tuple[tuple[str, str], ...] = (
    ("task list --state running", "task_list"),
    ("task list --state pending", "task_list_pending"),
    ("task list --state dead", "task_list_dead"),
    ("task list succeeded --limit 50", "task_list_succeeded_limit_50"),
    ("task show ID", "task_show"),
    ("agents", "agents"),
    ("dashboard: overview current", "dashboard_current"),
    ("dashboard: /api/overview", "dashboard_overview"),
    ("registry start-up", "registry_start"),
    ("allocator start → first placement", "allocator_start"),
    ("failover (kill -9 → placement)", "failover"),
    ("end-to-end tasks/s", "throughput"),
    ("store bytes per task", "bytes_per_task"),
)


def format_table(report: dict[str, Any]) -> str:
    history = report["history"]
    sizes: list[dict[str, Any]] = history["sizes"]
    head = ["", *(f"{s['tasks']:,} tasks" for s in sizes), "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, name in ROWS:
        unit = "/s" if name == "throughput" else "B" if name == "bytes_per_task" else "s"
        cells = [_cell(figure(s, FIGURES[name]), unit) for s in sizes]
        if all(c == "—" for c in cells):
            continue
        ratio = history["ratios"].get(name)
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {'—' if ratio is None else f'{ratio}×'} |"
        )
    loads = [s.get("load_average") for s in sizes]
    if any(loads):
        shown = " | ".join("—" if not load else f"{load[0]:.1f}" for load in loads)
        lines.append(f"| load average (1 min) at the start | {shown} | |")
    met = history["targets"]["met"]
    lines.append("")
    lines.append(
        f"targets: views and start-ups within {VIEW_LIMIT}× → {met['views_and_startups']}"
        f" (over: {', '.join(met['over_limit']) or 'none'}); throughput ≥ {THROUGHPUT_AT_LEAST}×"
        f" → {met['throughput']}; failover < {FAILOVER_UNDER_S} s → {met['failover']};"
        f" store flat with retention → {met['retention_flat']}"
    )
    retention = history.get("retention")
    if retention:
        mb = [round(s["bytes"] / 1e6, 1) for s in retention["samples"]]
        lines.append(
            f"retention run (RALLY_RETENTION={retention['retention']}, setting found in this "
            f"release: {retention['setting_found']}): MB over time {mb}, "
            f"end/third {retention['growth_end_over_third']}"
        )
        if retention.get("not_measurable"):
            lines.append(f"retention not measurable: {retention['not_measurable']}")
    for error in history["errors"]:
        lines.append(f"error: {error}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path, stamp: str | None = None) -> list[Path]:
    """``history-<UTC timestamp>.json`` and ``history-latest.json`` beside `rally bench`'s."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    paths = [out / f"history-{stamp or timestamp()}.json", out / "history-latest.json"]
    for path in paths:
        path.write_text(text)
    return paths
