"""`rally bench fleet`'s table and its file: ``fleet-<agents>-<UTC timestamp>.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workers.bench.results import timestamp


def write_fleet(report: dict[str, Any], out: Path, stamp: str | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    agents = report.get("options", {}).get("agents", 0)
    path = out / f"fleet-{agents}-{stamp or timestamp()}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _ms(spread: dict[str, Any] | None) -> str:
    if not spread or not spread.get("n"):
        return "-"
    return f"p50 {spread['p50']} ms, p99 {spread['p99']} ms, max {spread['max']} ms"


def format_fleet(report: dict[str, Any]) -> str:
    opts = report.get("options", {})
    cpu = report.get("cpu_share_of_core", {})
    inboxes = report.get("inboxes", {})
    conn = report.get("new_connection", {})
    rows = [
        ("agents", f"{opts.get('agents')} in {opts.get('processes')} processes"),
        ("registry shards", opts.get("registry_shards", 1)),
        ("offered", f"{opts.get('tasks_per_s')} tasks/s for {opts.get('seconds')} s"),
        ("tasks/s", report.get("tasks_per_s")),
        ("succeeded / dead", f"{report.get('tasks_succeeded')} / {report.get('tasks_dead')}"),
        ("placement", _ms(report.get("placement_ms"))),
        ("heartbeat lag", _ms(report.get("heartbeat_lag_ms"))),
        ("false losses", report.get("false_losses")),
        ("cpu (share of a core)", ", ".join(f"{k} {v}" for k, v in cpu.items())),
        ("inbox declare (s)", inboxes.get("declare_s_per_process_max")),
        ("all joined after (s)", inboxes.get("joined_s")),
    ]
    for key in ("broker_before", "broker_after_inboxes", "broker_after_run"):
        state = report.get(key) or {}
        rows.append(
            (
                key.replace("_", " "),
                f"file handles {state.get('file_handles')}/{state.get('file_handle_limit')}, "
                f"os fds {state.get('os_fds')}/{state.get('os_fd_limit')}, "
                f"rss {state.get('rss_mib')} MiB",
            )
        )
    rows.append(("broker os fds, max in run", report.get("broker_fds_max_during_run")))
    rows.append(
        ("new connection at end", f"{'opens' if conn.get('ok') else 'FAILS'} ({conn.get('s')} s)")
    )
    for error in report.get("errors", []):
        rows.append(("error", error))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
