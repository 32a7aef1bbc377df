"""The cost of a task, without I/O: /proc stat parsing, counter arithmetic, the report's keys."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from workers.bench import cpu
from workers.bench.counting import BROKER_PUBLISHES, PUBLISHED, UNROUTABLE
from workers.bench.options import BenchOptions
from workers.bench.rallypoint import RallyRun
from workers.bench.report import Collected, build_report, ratios_section
from workers.bench.table import format_table
from workers.bench.tally import Counts, parse, per_task, total

MACHINE = {"cores": 2, "python": "3.11", "rabbitmq": "3.10.8"}
TIMING = {"started_at": "2026-01-01T00:00:00Z", "duration_s": 1.0}
# pid 42, a command name with a space and a parenthesis, utime 250 and stime 50 ticks
STAT = "42 (python (x) y) S 1 42 42 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 3 0 100 0 0"


def test_cpu_ticks_are_utime_plus_stime_counted_after_the_name() -> None:
    assert cpu.parse_stat_ticks(STAT) == 300


def test_cpu_ms_per_task_by_kind_and_in_total() -> None:
    ticks_per_ms = cpu.TICKS_PER_S / 1000
    before = {"tasks": 0, "agent": 100, "broker": None}
    after = {"tasks": int(2000 * ticks_per_ms), "agent": 100 + int(500 * ticks_per_ms), "broker": 7}
    out = cpu.ms_per_task(before, after, tasks=1000)
    assert out["tasks"] == 2.0
    assert out["agent"] == 0.5
    assert out["broker"] is None  # not readable: not measured, never zero
    assert out["total"] is None  # a kind unknown: no total
    assert list(out)[:6] == list(cpu.KINDS)
    known = cpu.ms_per_task({"tasks": 0}, {"tasks": int(100 * ticks_per_ms)}, tasks=100)
    assert known["tasks"] == 1.0
    assert cpu.ms_per_task({"tasks": 0}, {"tasks": 5}, tasks=0)["tasks"] is None


def test_a_kind_with_an_unreadable_process_is_not_measured(tmp_path: Path) -> None:
    gone = 2**22 + 12345  # above pid_max: no such process
    assert cpu.process_ticks(gone) is None
    kinds = cpu.pids_by_kind({"tasks-0": gone, "tasks-1": gone, "allocator-0": gone}, [], gone, [])
    assert kinds["tasks"] == [gone, gone]
    assert kinds["broker"] == []
    sampled = cpu.sample(kinds)
    assert sampled["tasks"] is None
    assert sampled["broker"] is None  # no broker process found: not measured


TCP = (
    "  sl local_address rem_address st tx_queue rx_queue tr tm->when retrnsmt uid timeout inode\n"
    "   0: 00000000:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999  0 4242 1\n"
    "   1: 0100007F:1628 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   999  0 4343 1\n"
)


def test_the_broker_is_the_beam_process_listening_on_the_amqp_port(tmp_path: Path) -> None:
    beam = b"/usr/lib/erlang/erts/bin/beam.smp\0-s\0rabbit\0boot"
    # 10 serves 5672; 11 is another node (a test's cluster); 12 is not Erlang
    for pid, command, socket in ((10, beam, 4242), (11, beam, 5151), (12, b"sh\0", 4242)):
        (tmp_path / str(pid) / "fd").mkdir(parents=True)
        (tmp_path / str(pid) / "cmdline").write_bytes(command)
        (tmp_path / str(pid) / "fd" / "7").symlink_to(f"socket:[{socket}]")
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP)
    assert cpu.parse_listeners(TCP.splitlines()[1:], 5672) == {"4242"}  # not the connection
    assert cpu.broker_pids("amqp://guest:guest@127.0.0.1:5672/", tmp_path) == [10]
    assert cpu.broker_pids("amqp://guest:guest@127.0.0.1:5673/", tmp_path) == []
    assert cpu.broker_pids("amqp://guest:guest@rabbit.example:5672/", tmp_path) == []


def _exposition(published: float, unroutable: float, handled: float, appends: int) -> str:
    registry = CollectorRegistry()
    c = Counter(PUBLISHED, "", ("type",), registry=registry)
    c.labels("SubmitTask").inc(published)
    Counter(UNROUTABLE, "", ("type",), registry=registry).labels("TaskStarted").inc(unroutable)
    Counter(BROKER_PUBLISHES, "", registry=registry).inc(published / 2)
    h = Counter("rally_messages_handled", "", ("worker", "type", "outcome"), registry=registry)
    h.labels("tasks", "SubmitTask", "acked").inc(handled)
    h.labels("tasks", "SubmitTask", "retried").inc(1)
    seconds = Histogram("rally_store_append_seconds", "", ("worker",), registry=registry)
    for _ in range(appends):
        seconds.labels("tasks").observe(0.001)
    return generate_latest(registry).decode()


def test_counters_are_parsed_added_and_divided_by_the_tasks() -> None:
    before = total([parse(_exposition(10, 0, 9, 4)), parse(_exposition(0, 0, 0, 0))])
    after = total([parse(_exposition(70, 20, 49, 24)), parse(_exposition(0, 0, 0, 0))])
    delta = after - before
    assert delta.delivered == {"SubmitTask": 40.0}
    out = per_task(delta, tasks=20, events=100)
    assert out["publishes"] == 3.0
    assert out["unroutable"] == 1.0
    assert out["broker_publishes"] == 1.5
    assert out["deliveries"] == 2.0
    assert out["appends"] == 1.0
    assert out["events"] == 5.0
    assert out["publishes_by_type"] == {"SubmitTask": 3.0}
    assert out["unroutable_by_type"] == {"TaskStarted": 1.0}
    assert out["appends_by_worker"] == {"tasks": 1.0}


def test_publishes_are_not_measured_where_a_process_did_not_count_them() -> None:
    registry = CollectorRegistry()
    Counter("rally_messages_handled", "", ("type",), registry=registry).labels("X").inc(4)
    uncounted = parse(generate_latest(registry).decode())
    assert uncounted.published is None
    both = parse(_exposition(10, 0, 1, 1)) + uncounted
    out = per_task(both - Counts(published={}, unroutable={}, broker_publishes=0.0), tasks=2)
    assert out["publishes"] is None
    assert out["unroutable"] is None
    assert out["deliveries"] == 3.0  # 1 acked + 1 retried + 4
    assert per_task(None, tasks=2)["deliveries"] is None


def _rally(publishes: float, tasks_cpu: float | None) -> RallyRun:
    return RallyRun(
        replicas=1,
        tasks=100,
        tasks_per_s=100.0,
        p50_ms=10.0,
        p99_ms=20.0,
        p50_ms_one_in_flight=8.0,
        worker_peak_rss_mib={"tasks-0": 70.0},
        agent_peak_rss_mib={"a-0": 55.0},
        per_task={
            "publishes": publishes,
            "deliveries": 7.0,
            "appends": 2.0,
            "unroutable": 0.0,
            "publishes_by_type": {"SubmitTask": 1.0, "TaskOutcome": publishes - 1},
        },
        cpu_ms_per_task={"tasks": tasks_cpu, "broker": None},
    )


def test_the_report_gives_the_cost_per_task_as_medians_with_n_a_where_unmeasured() -> None:
    runs = [_rally(9.0, 1.0), _rally(5.0, 3.0), _rally(6.0, None)]
    report = build_report(Collected(rallypoint=runs), BenchOptions(), MACHINE, TIMING)
    per, cost = report["rallypoint"]["per_task"], report["rallypoint"]["cpu_ms_per_task"]
    assert (per["publishes"], per["publishes_min"], per["publishes_max"]) == (6.0, 5.0, 9.0)
    assert per["deliveries"] == 7.0
    assert per["appends"] == 2.0
    assert per["events"] is None
    assert per["publishes_by_type"] == {"TaskOutcome": 5.0, "SubmitTask": 1.0}
    assert cost["tasks"] == 2.0  # the median of the runs that measured it
    assert cost["broker"] is None
    assert report["celery"]["p50_ms_one_in_flight"] is None
    met = {t["name"]: t["met"] for t in report["targets"]}
    assert met["broker publishes per task"] is True
    assert met["unroutable per task"] is True
    table = format_table(report)
    assert "messages published per task" in table
    assert "CPU ms per task: broker" in table
    assert "n/a" in table


def test_one_in_flight_ratios_compare_the_medians() -> None:
    report = build_report(Collected(rallypoint=[_rally(6.0, 1.0)]), BenchOptions(), MACHINE, TIMING)
    report["floor"]["p50_ms_one_in_flight"] = 2.0
    report["celery"]["p50_ms_one_in_flight"] = 4.0
    ratios = ratios_section(report)
    assert ratios["rallypoint_one_in_flight_vs_floor"] == 4.0
    assert ratios["rallypoint_one_in_flight_vs_celery"] == 2.0
