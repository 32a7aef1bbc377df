"""The runs of one bench, turned into the one JSON object `rally bench --json` prints.

Every figure is the median of its runs, with ``<figure>_min`` and
``<figure>_max`` beside it and the runs themselves under ``runs``. A part that
was skipped or failed keeps all its keys, with ``null`` figures, so readers of
the JSON never need to test for a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.bench.celery_peer import CeleryRun
from workers.bench.cpu import KINDS as CPU_KINDS
from workers.bench.floor import BODY_BYTES, QUEUE_TYPE, FloorRun
from workers.bench.options import BenchOptions
from workers.bench.rallypoint import RallyRun
from workers.bench.stats import Spread
from workers.store.bench import BenchResult

FLOOR_FIGURES = (
    "publish_msgs_per_s",
    "consume_msgs_per_s",
    "roundtrip_msgs_per_s",
    "p50_ms",
    "p99_ms",
    "p50_ms_one_in_flight",
)
RALLY_FIGURES = ("tasks_per_s", "p50_ms", "p99_ms", "p50_ms_one_in_flight")
STORE_FIGURES = ("single_per_s", "batch_per_s", "group_per_s")
STORE_ADAPTERS = ("sqlite", "postgres")

# the issues' targets for this 2-core machine: reported, never asserted
TARGET_RALLY_VS_CELERY = 2.5
TARGET_RALLY_VS_FLOOR = 0.5
TARGET_P50_ONE_IN_FLIGHT_MS = 5.0
TARGET_ONE_IN_FLIGHT_VS_FLOOR = 4.0
TARGET_WORKER_MIB = 80.0
TARGET_AGENT_MIB = 60.0
TARGET_PUBLISHES_PER_TASK = 6.0
TARGET_UNROUTABLE_PER_TASK = 0.0

PER_TASK_FIGURES = (
    "publishes",
    "deliveries",
    "appends",
    "events",
    "unroutable",
    "broker_publishes",
)
PER_TASK_BY_TYPE = (
    "publishes_by_type",
    "deliveries_by_type",
    "unroutable_by_type",
    "appends_by_worker",
)


@dataclass
class Collected:
    """Everything measured, as it was measured; the report is computed from this."""

    floor: list[FloorRun] = field(default_factory=list)
    rallypoint: list[RallyRun] = field(default_factory=list)
    celery: list[CeleryRun] = field(default_factory=list)
    scaling: dict[int, list[RallyRun]] = field(default_factory=dict)
    store: list[list[BenchResult]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def spread(name: str, values: Iterable[float | None], digits: int = 1) -> dict[str, float | None]:
    """``{name: median, name_min: ..., name_max: ...}`` of the runs that have the figure."""
    known = [v for v in values if v is not None]
    if not known:
        return {name: None, f"{name}_min": None, f"{name}_max": None}
    s = Spread.of(known)
    return {
        name: round(s.median, digits),
        f"{name}_min": round(s.min, digits),
        f"{name}_max": round(s.max, digits),
    }


def _figures(runs: Sequence[Any], names: Sequence[str], digits: int = 1) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        out |= spread(name, (getattr(r, name) for r in runs), digits)
    return out


def _rounded(run: Any, digits: int = 2) -> dict[str, Any]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(run).items()}


def floor_section(runs: list[FloorRun], options: BenchOptions) -> dict[str, Any]:
    return {
        "queue_type": QUEUE_TYPE,
        "messages": options.tasks,
        "window": options.floor_window,
        "body_bytes": BODY_BYTES,
        "responder": "separate OS process",
        **_figures(runs, FLOOR_FIGURES),
        "runs": [_rounded(r) for r in runs],
    }


def rally_section(runs: list[RallyRun], options: BenchOptions) -> dict[str, Any]:
    return {
        "tasks": options.tasks,
        "window": options.window,
        "sequential": options.sequential,
        "replicas": options.replicas,
        "agents": options.agents,
        "agent_capacity": options.agent_capacity,
        "store": store_kind(options.store_url),
        "workers": "separate OS processes (python -m workers.runtime.process)",
        **_figures(runs, RALLY_FIGURES),
        "per_task": per_task_section(runs),
        "cpu_ms_per_task": cpu_section(runs),
        "runs": [_rally_run(r) for r in runs],
    }


def per_task_section(runs: Sequence[RallyRun]) -> dict[str, Any]:
    """Messages and appends per task, medians of the runs (None: not measured)."""
    out: dict[str, Any] = {}
    for name in PER_TASK_FIGURES:
        out |= spread(name, (r.per_task.get(name) for r in runs), digits=2)
    for name in PER_TASK_BY_TYPE:
        out[name] = _median_by_key([r.per_task.get(name) for r in runs])
    out["window"] = "the saturated run, divided by its tasks"
    out["counted_by"] = (
        "deliveries: rally_messages_handled; appends: rally_store_append_seconds;"
        " events: the store's last position; publishes: the bench's publisher counters"
        " (workers.bench.counting)"
    )
    return out


def cpu_section(runs: Sequence[RallyRun]) -> dict[str, Any]:
    """CPU ms per task by process kind, medians of the runs (None: not measured)."""
    kinds: list[str] = []
    for run in runs:
        kinds += [k for k in run.cpu_ms_per_task if k not in kinds]
    out: dict[str, Any] = {}
    for kind in kinds or [*CPU_KINDS, "total"]:
        out |= spread(kind, (r.cpu_ms_per_task.get(kind) for r in runs), digits=3)
    return out


def _median_by_key(values: Sequence[dict[str, float] | None]) -> dict[str, float] | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    keys = sorted({k for v in known for k in v}, key=lambda k: -max(v.get(k, 0.0) for v in known))
    return {k: round(Spread.of([v.get(k, 0.0) for v in known]).median, 2) for k in keys}


def _rally_run(run: RallyRun) -> dict[str, Any]:
    keep = ("replicas", "tasks", *RALLY_FIGURES, "tasks_per_s_by_fifth")
    out = {k: v for k, v in _rounded(run).items() if k in keep}
    out["per_task"] = {k: run.per_task.get(k) for k in PER_TASK_FIGURES}
    out["cpu_ms_per_task"] = dict(run.cpu_ms_per_task)
    return out


def celery_section(runs: list[CeleryRun], options: BenchOptions) -> dict[str, Any]:
    return {
        "tasks": options.tasks,
        "pool": options.celery_pool,
        "concurrency": runs[0].concurrency if runs else options.celery_concurrency,
        "broker": "pyamqp",
        "confirm_publish": True,
        "result_backend": "rpc",
        "queue_type": "classic (Celery's default)",
        "client": "Celery's, one thread: publish all, then await every result",
        **spread("tasks_per_s", (r.tasks_per_s for r in runs)),
        **spread("p50_ms_one_in_flight", (r.p50_ms_one_in_flight for r in runs), digits=2),
        "runs": [_rounded(r) for r in runs],
    }


def scaling_section(scaling: dict[int, list[RallyRun]], options: BenchOptions) -> dict[str, Any]:
    points = [
        {
            "replicas": replicas,
            **spread("tasks_per_s", (r.tasks_per_s for r in scaling.get(replicas, []))),
            "runs": [round(r.tasks_per_s, 2) for r in scaling.get(replicas, [])],
        }
        for replicas in options.scaling
    ]
    return {"tasks": options.tasks, "replicas": list(options.scaling), "points": points}


def store_section(runs: list[list[BenchResult]], options: BenchOptions) -> dict[str, Any]:
    section: dict[str, Any] = {}
    for adapter in STORE_ADAPTERS:
        results = [r for run in runs for r in run if r.adapter == adapter]
        section[adapter] = _figures(results, STORE_FIGURES, digits=0)
    section["unit"] = "events appended per second"
    section["postgres_url"] = options.pg_url and _redacted(options.pg_url)
    return section


def memory_section(
    rally: list[RallyRun], celery: list[CeleryRun], options: BenchOptions
) -> dict[str, Any]:
    measured = options.runs_part("memory")
    by_worker: dict[str, float | None] = {}
    for worker in ("registry", "tasks", "allocator"):
        peaks = [
            mib
            for run in rally
            for name, mib in run.worker_peak_rss_mib.items()
            if name.startswith(f"{worker}-")
        ]
        by_worker[worker] = max(peaks) if peaks and measured else None
    agents = [mib for run in rally for mib in run.agent_peak_rss_mib.values()]
    known_workers = [v for v in by_worker.values() if v is not None]
    celery_peaks = [r.worker_peak_rss_mib for r in celery if r.worker_peak_rss_mib is not None]
    return {
        "worker_replica_peak_rss_mib": max(known_workers) if known_workers else None,
        "agent_peak_rss_mib": max(agents) if agents and measured else None,
        "by_worker": by_worker,
        "celery_worker_peak_rss_mib": max(celery_peaks) if celery_peaks and measured else None,
        "measure": "VmHWM (peak RSS) from /proc/<pid>/status, read after the saturated run",
    }


def ratios_section(report: dict[str, Any]) -> dict[str, float | None]:
    rally, celery, floor = report["rallypoint"], report["celery"], report["floor"]
    one = "p50_ms_one_in_flight"
    return {
        "rallypoint_vs_celery": _ratio(rally["tasks_per_s"], celery["tasks_per_s"]),
        "rallypoint_vs_floor_roundtrip": _ratio(
            rally["tasks_per_s"], floor["roundtrip_msgs_per_s"]
        ),
        # latency: how many times the floor's (or Celery's) p50 one in flight ours is
        "rallypoint_one_in_flight_vs_floor": _ratio(rally[one], floor[one]),
        "rallypoint_one_in_flight_vs_celery": _ratio(rally[one], celery[one]),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def targets_section(report: dict[str, Any]) -> list[dict[str, Any]]:
    ratios, rally, memory = report["ratios"], report["rallypoint"], report["memory"]
    per_task = rally["per_task"]
    rows = (
        ("rallypoint/celery tasks/s", ">=", TARGET_RALLY_VS_CELERY, ratios["rallypoint_vs_celery"]),
        (
            "rallypoint tasks/s / floor round trips/s",
            ">=",
            TARGET_RALLY_VS_FLOOR,
            ratios["rallypoint_vs_floor_roundtrip"],
        ),
        (
            "rallypoint p50 ms, one in flight",
            "<=",
            TARGET_P50_ONE_IN_FLIGHT_MS,
            rally["p50_ms_one_in_flight"],
        ),
        (
            "rallypoint p50 one in flight / floor's",
            "<=",
            TARGET_ONE_IN_FLIGHT_VS_FLOOR,
            ratios["rallypoint_one_in_flight_vs_floor"],
        ),
        ("broker publishes per task", "<=", TARGET_PUBLISHES_PER_TASK, per_task["publishes"]),
        ("unroutable per task", "<=", TARGET_UNROUTABLE_PER_TASK, per_task["unroutable"]),
        (
            "worker replica peak RSS MiB",
            "<=",
            TARGET_WORKER_MIB,
            memory["worker_replica_peak_rss_mib"],
        ),
        ("agent peak RSS MiB", "<=", TARGET_AGENT_MIB, memory["agent_peak_rss_mib"]),
    )
    return [
        {
            "name": name,
            "target": f"{op} {target:g}",
            "value": value,
            "met": None if value is None else (value >= target if op == ">=" else value <= target),
        }
        for name, op, target, value in rows
    ]


def store_kind(url: str | None) -> str:
    return "sqlite" if url is None or url.startswith("sqlite") else "postgresql"


def options_section(options: BenchOptions) -> dict[str, Any]:
    out = {k: v for k, v in asdict(options).items() if k not in ("skip", "out", "scratch")}
    out["skip"] = sorted(options.skip)
    out["out"] = str(options.out)
    out["profile"] = str(options.profile) if options.profile else None
    out["scaling"] = list(options.scaling)
    out["amqp_url"] = _redacted(options.amqp_url)
    out["store_url"] = options.store_url and _redacted(options.store_url)
    out["pg_url"] = options.pg_url and _redacted(options.pg_url)
    return out


def _redacted(url: str) -> str:
    from broker.connection import redact

    return redact(url)


def build_report(
    collected: Collected, options: BenchOptions, machine: dict[str, Any], timing: dict[str, Any]
) -> dict[str, Any]:
    report: dict[str, Any] = {
        **timing,
        "floor": floor_section(collected.floor, options),
        "rallypoint": rally_section(collected.rallypoint, options),
        "celery": celery_section(collected.celery, options),
        "scaling": scaling_section(collected.scaling, options),
        "store": store_section(collected.store, options),
        "memory": memory_section(collected.rallypoint, collected.celery, options),
    }
    report["ratios"] = ratios_section(report)
    report["targets"] = targets_section(report)
    report["machine"] = machine
    report["options"] = options_section(options)
    report["errors"] = list(collected.errors)
    return report
