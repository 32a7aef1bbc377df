"""The report as a table for people: the comparison, its ratios and targets, then the rest."""

from __future__ import annotations

from typing import Any


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{text}{unit}"


def _figure(section: dict[str, Any], name: str, unit: str = "") -> str:
    median = section.get(name)
    if median is None:
        return "-"
    low, high = section.get(f"{name}_min"), section.get(f"{name}_max")
    if low is None or high is None or low == high:
        return _num(median, unit)
    return f"{_num(median, unit)} ({_num(low)}-{_num(high)})"


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(label) for label, _ in rows)
    return [f"  {label:<{width}}  {value}" for label, value in rows]


def _na(section: dict[str, Any] | None, name: str, unit: str = "") -> str:
    """A figure, or n/a where it could not be measured here (no counter, no /proc entry)."""
    if section is None or section.get(name) is None:
        return "n/a"
    return _figure(section, name, unit)


def cost_lines(rally: dict[str, Any]) -> list[str]:
    per_task, cpu = rally.get("per_task"), rally.get("cpu_ms_per_task")
    lines = ["", "cost of one task (saturated run)"]
    rows = [
        (f"{label} per task", _na(per_task, name))
        for label, name in (
            ("messages published", "publishes"),
            ("  of them unroutable", "unroutable"),
            ("AMQP publishes (a bundle once)", "broker_publishes"),
            ("messages delivered", "deliveries"),
            ("store appends (handler calls)", "appends"),
            ("events recorded", "events"),
        )
    ]
    kinds = [k for k in (cpu or {}) if not k.endswith(("_min", "_max"))]
    rows += [(f"CPU ms per task: {kind}", _na(cpu, kind)) for kind in kinds]
    return lines + _rows(rows)


def format_table(report: dict[str, Any]) -> str:
    floor, rally, celery = report["floor"], report["rallypoint"], report["celery"]
    memory, machine = report["memory"], report["machine"]
    runs = report["options"]["runs"]
    lines = [
        f"rally bench: median of {runs} run(s), (min-max); {machine.get('cores')} cores, "
        f"RabbitMQ {machine.get('rabbitmq')}, Python {machine.get('python')}",
        "",
        "throughput",
    ]
    lines += _rows(
        [
            (
                f"floor: raw aio-pika round trips/s ({floor['queue_type']} queues)",
                _figure(floor, "roundtrip_msgs_per_s"),
            ),
            (
                f"rallypoint: tasks/s ({rally['replicas']} replica(s), {rally['agents']} agents)",
                _figure(rally, "tasks_per_s"),
            ),
            (f"celery: tasks/s ({celery['pool']} pool)", _figure(celery, "tasks_per_s")),
        ]
    )
    lines += ["", "ratios and targets"]
    lines += _rows(
        [
            (
                f"{t['name']} (target {t['target']})",
                f"{_num(t['value'])}  "
                + {True: "met", False: "NOT met", None: "not measured"}[t["met"]],
            )
            for t in report["targets"]
        ]
    )
    lines += ["", "latency (submit to result)"]
    lines += _rows(
        [
            ("rallypoint p50 saturated", _figure(rally, "p50_ms", " ms")),
            ("rallypoint p99 saturated", _figure(rally, "p99_ms", " ms")),
            ("rallypoint p50 one in flight", _figure(rally, "p50_ms_one_in_flight", " ms")),
            ("celery p50 one in flight", _figure(celery, "p50_ms_one_in_flight", " ms")),
            ("floor round trip p50 saturated", _figure(floor, "p50_ms", " ms")),
            ("floor round trip p99 saturated", _figure(floor, "p99_ms", " ms")),
            ("floor round trip p50 one in flight", _figure(floor, "p50_ms_one_in_flight", " ms")),
        ]
    )
    lines += cost_lines(rally)
    lines += ["", "floor, one way"]
    lines += _rows(
        [
            ("confirmed publish msgs/s", _figure(floor, "publish_msgs_per_s")),
            ("consume with acks msgs/s", _figure(floor, "consume_msgs_per_s")),
        ]
    )
    lines += ["", "scaling: rallypoint tasks/s by replicas of each worker"]
    lines += _rows(
        [
            (f"{p['replicas']} replica(s)", _figure(p, "tasks_per_s"))
            for p in report["scaling"]["points"]
        ]
    )
    store = report["store"]
    cells = [
        (label, _figure(store["sqlite"], name), _figure(store["postgres"], name))
        for label, name in (
            ("single event per append", "single_per_s"),
            ("batched (append_many)", "batch_per_s"),
            ("group commit (concurrent)", "group_per_s"),
        )
    ]
    width = max(len("sqlite"), *(len(sqlite) for _, sqlite, _ in cells)) + 3
    lines += ["", f"store appends (events/s)    {'sqlite':<{width}}postgres"]
    lines += [f"  {label:<26}{sqlite:<{width}}{pg}" for label, sqlite, pg in cells]
    lines += ["", "memory (peak RSS)"]
    lines += _rows(
        [
            ("worker replica, largest", _num(memory["worker_replica_peak_rss_mib"], " MiB")),
            *((f"  {worker}", _num(mib, " MiB")) for worker, mib in memory["by_worker"].items()),
            ("SDK agent process", _num(memory["agent_peak_rss_mib"], " MiB")),
            ("celery worker", _num(memory["celery_worker_peak_rss_mib"], " MiB")),
        ]
    )
    if report["errors"]:
        lines += ["", "errors"] + [f"  {e}" for e in report["errors"]]
    return "\n".join(lines)
