"""The PNG of a report: rallypoint beside the floor and Celery, and scaling over replicas.

Bars are medians, error bars span min to max over the runs. matplotlib runs
headless (Agg) and is imported only here, so `rally` starts without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _bar(section: dict[str, Any], name: str) -> tuple[float, float, float] | None:
    median = section.get(name)
    if median is None:
        return None
    low = section.get(f"{name}_min", median)
    high = section.get(f"{name}_max", median)
    return float(median), float(median - low), float(high - median)


def write_chart(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compared = [
        (
            "floor\n(raw aio-pika\nround trips/s)",
            _bar(report["floor"], "roundtrip_msgs_per_s"),
            "#9e9e9e",
        ),
        ("rallypoint\n(tasks/s)", _bar(report["rallypoint"], "tasks_per_s"), "#1f77b4"),
        ("Celery\n(tasks/s)", _bar(report["celery"], "tasks_per_s"), "#ff7f0e"),
    ]
    scaling = [(f"{p['replicas']}", _bar(p, "tasks_per_s")) for p in report["scaling"]["points"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    _bars(left, [(label, bar, colour) for label, bar, colour in compared])
    left.set_title("No-op tasks, results awaited (same RabbitMQ)")
    left.set_ylabel("per second (median, min-max)")
    _bars(right, [(label, bar, "#1f77b4") for label, bar in scaling])
    right.set_title("rallypoint tasks/s by replicas of each worker")
    right.set_xlabel("replicas")
    machine, options = report["machine"], report["options"]
    fig.suptitle(
        f"rally bench {report.get('started_at', '')[:16]}Z: {options['tasks']:,} tasks, "
        f"{options['runs']} run(s), {machine.get('cores')} cores, "
        f"RabbitMQ {machine.get('rabbitmq')}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(axes: Any, bars: list[tuple[str, tuple[float, float, float] | None, str]]) -> None:
    labels = [label for label, _, _ in bars]
    heights = [bar[0] if bar else 0.0 for _, bar, _ in bars]
    errors = [
        [bar[1] if bar else 0.0 for _, bar, _ in bars],
        [bar[2] if bar else 0.0 for _, bar, _ in bars],
    ]
    colours = [colour for _, _, colour in bars]
    positions = list(range(len(bars)))
    axes.bar(positions, heights, yerr=errors, capsize=6, color=colours)
    axes.set_xticks(positions, labels)
    for x, (_, bar, _) in zip(positions, bars, strict=True):
        text = f"{bar[0]:,.0f}" if bar else "not measured"
        axes.annotate(
            text,
            (x, bar[0] + bar[2] if bar else 0.0),
            ha="center",
            va="bottom",
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=9,
        )
    axes.margins(y=0.15)
