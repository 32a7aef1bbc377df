"""The arithmetic of the bench, without I/O: medians, percentiles, pacing, the report's shape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from workers.bench.celery_app import celery_broker_url
from workers.bench.chart import write_chart
from workers.bench.fleet import scratch_store
from workers.bench.memory import parse_status_kib
from workers.bench.options import BenchOptions
from workers.bench.pacing import pipelined
from workers.bench.rallypoint import RallyRun, rates_by_part
from workers.bench.report import Collected, build_report, spread
from workers.bench.stats import Spread, median, percentile, rate
from workers.bench.table import format_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MACHINE = {"cores": 2, "python": "3.11", "rabbitmq": "3.10.8"}
TIMING = {"started_at": "2026-01-01T00:00:00Z", "duration_s": 1.0}


def test_median_of_odd_and_even_counts() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([7]) == 7


def test_percentile_is_a_measured_value_by_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([5.0, 1.0], 50) == 1.0
    assert percentile([5.0, 1.0], 99) == 5.0


def test_empty_input_and_bad_percentile_are_errors() -> None:
    with pytest.raises(ValueError, match="median"):
        median([])
    with pytest.raises(ValueError, match="percentile"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_spread_keeps_median_min_max_and_runs() -> None:
    s = Spread.of([30.0, 10.0, 20.0])
    assert (s.median, s.min, s.max, s.runs) == (20.0, 10.0, 30.0, (30.0, 10.0, 20.0))
    assert rate(10, 2.0) == 5.0
    assert rate(10, 0.0) == 0.0


def test_spread_fields_ignore_missing_runs_and_name_min_max() -> None:
    assert spread("tasks_per_s", [100.0, None, 300.0, 200.0]) == {
        "tasks_per_s": 200.0,
        "tasks_per_s_min": 100.0,
        "tasks_per_s_max": 300.0,
    }
    assert spread("p50_ms", [None]) == {"p50_ms": None, "p50_ms_min": None, "p50_ms_max": None}


def test_vmhwm_is_read_in_mib() -> None:
    status = "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40960 kB\n"
    assert parse_status_kib(status, "VmHWM") == 50.0
    assert parse_status_kib(status, "VmRSS") == 40.0
    assert parse_status_kib(status, "VmSwap") is None


def test_the_celery_url_names_the_same_broker_and_vhost() -> None:
    assert celery_broker_url("amqp://guest:guest@127.0.0.1:5672/") == (
        "pyamqp://guest:guest@127.0.0.1:5672/%2F"
    )
    assert celery_broker_url("amqp://u:p%40ss@rabbit:5673/fleet") == (
        "pyamqp://u:p%40ss@rabbit:5673/fleet"
    )


async def test_pipelined_keeps_the_window_and_runs_everything() -> None:
    in_flight, peak, done = 0, 0, []

    async def op(i: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001 * (i % 3))
        in_flight -= 1
        done.append(i)

    await pipelined(50, 7, op)
    assert sorted(done) == list(range(50))
    assert peak == 7


async def test_pipelined_raises_the_first_failure() -> None:
    async def op(i: int) -> None:
        if i == 3:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await pipelined(100, 2, op)


def test_rates_by_fifth_show_a_run_that_slows_down() -> None:
    # ten completions: two per second at first, then one per second, then one every 2 s
    finished = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
    assert rates_by_part(finished) == (2.0, 2.0, 1.0, 1.0, 0.5)
    assert rates_by_part([1.0, 2.0]) == ()


def test_bad_options_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="cannot skip teleport"):
        BenchOptions(skip=frozenset({"teleport"}))
    with pytest.raises(ValueError, match="--tasks"):
        BenchOptions(tasks=0)
    quick = BenchOptions().quickened()
    assert quick.quick
    assert quick.runs == 1
    assert quick.tasks <= 300


def _rally(tasks_per_s: float) -> RallyRun:
    return RallyRun(
        replicas=1,
        tasks=100,
        tasks_per_s=tasks_per_s,
        p50_ms=10.0,
        p99_ms=20.0,
        p50_ms_one_in_flight=4.0,
        worker_peak_rss_mib={"tasks-0": 70.0, "registry-0": 50.0},
        agent_peak_rss_mib={"a-0": 55.0},
    )


def test_a_report_with_nothing_measured_keeps_every_key() -> None:
    report = build_report(Collected(), BenchOptions(), MACHINE, TIMING)
    assert report["floor"]["roundtrip_msgs_per_s"] is None
    assert report["rallypoint"]["tasks_per_s"] is None
    assert report["rallypoint"]["p50_ms_one_in_flight_max"] is None
    assert report["celery"]["tasks_per_s_min"] is None
    assert [p["replicas"] for p in report["scaling"]["points"]] == [1, 2, 4]
    assert report["store"]["postgres"]["batch_per_s"] is None
    assert set(report["ratios"]) >= {"rallypoint_vs_celery", "rallypoint_vs_floor_roundtrip"}
    assert all(v is None for v in report["ratios"].values())
    assert report["rallypoint"]["per_task"]["publishes"] is None
    assert report["rallypoint"]["cpu_ms_per_task"]["broker"] is None
    assert report["celery"]["p50_ms_one_in_flight"] is None
    assert all(t["met"] is None for t in report["targets"])
    assert "not measured" in format_table(report)


def test_ratios_targets_and_memory_come_from_the_medians() -> None:
    collected = Collected(rallypoint=[_rally(100.0), _rally(300.0), _rally(200.0)])
    report = build_report(collected, BenchOptions(), MACHINE, TIMING)
    rally = report["rallypoint"]
    assert (rally["tasks_per_s"], rally["tasks_per_s_min"], rally["tasks_per_s_max"]) == (
        200.0,
        100.0,
        300.0,
    )
    assert len(rally["runs"]) == 3
    assert report["memory"]["by_worker"] == {"registry": 50.0, "tasks": 70.0, "allocator": None}
    assert report["memory"]["worker_replica_peak_rss_mib"] == 70.0
    met = {t["name"]: t["met"] for t in report["targets"]}
    assert met["rallypoint p50 ms, one in flight"] is True
    assert met["agent peak RSS MiB"] is True


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    collected = Collected(rallypoint=[_rally(120.0)], scaling={1: [_rally(120.0)]})
    report = build_report(collected, BenchOptions(), MACHINE, TIMING)
    path = write_chart(report, tmp_path / "chart.png")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000


def test_a_scratch_store_is_fresh_and_never_the_callers_schema(tmp_path: Path) -> None:
    sqlite = scratch_store(None, tmp_path, "bench-1a2b3c4d")
    assert sqlite.url == f"sqlite:///{tmp_path / 'rally.db'}"
    assert sqlite.pg_schema is None
    pg = scratch_store("postgresql://u@db:5432/fleet?schema=prod", tmp_path, "bench-1a2b3c4d")
    assert pg.url == "postgresql://u@db:5432/fleet?schema=rally_bench_1a2b3c4d"
    assert (pg.pg_dsn, pg.pg_schema) == ("postgresql://u@db:5432/fleet", "rally_bench_1a2b3c4d")
