"""`rally bench`: rallypoint beside the raw broker and Celery, scaling, the store and memory.

Writes ``<out>/<UTC timestamp>.json``, ``<out>/latest.json`` and
``<out>/latest.png`` every time; prints a table, or with ``--json`` the one
JSON object. Progress goes to stderr. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from workers.bench.allocator_cli import register_allocator
from workers.bench.celery_peer import POOLS
from workers.bench.options import DEFAULT_PG_URL, PARTS, BenchOptions


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="measure rallypoint against raw aio-pika and Celery, scaling, store, memory",
        description="Measure rallypoint end to end beside the raw broker (the floor) and Celery "
        "on the same RabbitMQ, plus scaling over replicas, store appends and memory. "
        "Every figure is the median of --runs runs, with min and max.",
    )
    defaults = BenchOptions()
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--quick", action="store_true", help="small N and one run: under a minute, every key kept"
    )
    parser.add_argument(
        "--tasks", type=int, default=defaults.tasks, metavar="N", help="tasks per run (10000)"
    )
    parser.add_argument(
        "--runs", type=int, default=defaults.runs, metavar="R", help="runs per figure (3)"
    )
    parser.add_argument(
        "--skip",
        type=_parts,
        default=frozenset(),
        metavar="PARTS",
        help=f"comma-separated parts to leave out: {','.join(PARTS)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=defaults.out,
        metavar="DIR",
        help="results directory (bench/results)",
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="the rallypoint fleet's store (default: a fresh SQLite file under var/bench; "
        "a postgresql:// URL gets a throw-away schema)",
    )
    parser.add_argument(
        "--pg",
        default=os.environ.get("RALLY_BENCH_PG_URL", DEFAULT_PG_URL),
        metavar="URL",
        help="PostgreSQL for the store bench ('' to bench SQLite only)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=defaults.replicas,
        metavar="N",
        help="replicas of each worker for the rallypoint figure (1)",
    )
    parser.add_argument(
        "--scaling",
        type=_counts,
        default=defaults.scaling,
        metavar="LIST",
        help="replica counts to scale over (1,2,4)",
    )
    parser.add_argument("--agents", type=int, default=defaults.agents, help="agent processes (2)")
    parser.add_argument(
        "--agent-capacity",
        type=int,
        default=defaults.agent_capacity,
        metavar="N",
        help="tasks each agent runs at once (256)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=defaults.window,
        metavar="N",
        help="rallypoint tasks in flight when saturated (1000)",
    )
    parser.add_argument(
        "--floor-window",
        type=int,
        default=defaults.floor_window,
        metavar="N",
        help="floor round trips in flight (500)",
    )
    parser.add_argument(
        "--celery-pool",
        choices=POOLS,
        default=defaults.celery_pool,
        help=f"Celery worker pool ({defaults.celery_pool})",
    )
    parser.add_argument(
        "--celery-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="Celery worker concurrency (the pool's default)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy profiles of the fleet during the first rallypoint run",
    )
    parser.set_defaults(func=run)
    parts = parser.add_subparsers(dest="bench_part", metavar="PART")
    parts.required = False  # `rally bench` alone is the bench it always was
    register_history(parts)
    register_fleet(parts)
    register_allocator(parts)


def register_fleet(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "fleet",
        help="N simulated agents speaking the protocol, tasks flowing: what a fleet costs",
        description="Run --agents simulated agents (each its own inbox, registration and "
        "heartbeats, one AMQP message each, over AMQP) in a few processes against one replica "
        "of each worker, submitting --tasks-per-s for --seconds. Reports registry and "
        "allocator CPU, heartbeat handling lag, placement latency, false losses, tasks/s, the "
        "broker's file descriptors and memory, inbox declare time and whether a new connection "
        "still opens. Uses RALLY_AMQP_URL: give a private node for large fleets.",
    )
    parser.add_argument("--agents", type=int, default=100, metavar="N", help="agents (100)")
    parser.add_argument(
        "--tasks-per-s", type=float, default=100.0, metavar="R", help="tasks submitted a second"
    )
    parser.add_argument("--seconds", type=float, default=60.0, metavar="S", help="load time (60)")
    parser.add_argument("--processes", type=int, default=4, metavar="P", help="agent processes (4)")
    parser.add_argument(
        "--capacity", type=int, default=4, metavar="N", help="tasks each agent runs at once (4)"
    )
    parser.add_argument(
        "--store", default=None, metavar="URL", help="the fleet's store (fresh SQLite file)"
    )
    parser.add_argument(
        "--rabbit-node", default=None, metavar="NODE",
        help="the node for rabbitmqctl's file-handle count (its default node)",
    )  # fmt: skip
    parser.add_argument(
        "--registry-shards", type=int, default=1, metavar="N",
        help="registry shards, one process each (RALLY_REGISTRY_SHARDS; 1)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--out", type=Path, default=Path("bench") / "results", metavar="DIR",
        help="results directory (bench/results)",
    )  # fmt: skip
    parser.set_defaults(func=run_fleet)


def run_fleet(args: argparse.Namespace) -> int:
    from broker.settings import BrokerSettings
    from contracts.shards import SLOTS
    from workers.bench.fleet_report import format_fleet, write_fleet
    from workers.bench.fleet_run import FleetOptions, run_fleet_bench
    from workers.cli.main import UserError
    from workers.runtime.logs import quiet_logs

    if args.agents < 1 or args.processes < 1 or args.tasks_per_s <= 0 or args.seconds <= 0:
        raise UserError("--agents, --processes, --tasks-per-s and --seconds must be positive")
    if not 1 <= args.registry_shards <= SLOTS:
        raise UserError(f"--registry-shards must be 1..{SLOTS}")
    options = FleetOptions(
        agents=args.agents,
        tasks_per_s=args.tasks_per_s,
        seconds=args.seconds,
        processes=min(args.processes, args.agents),
        capacity=args.capacity,
        amqp_url=BrokerSettings.from_env().amqp_url,
        store_url=args.store or None,
        rabbit_node=args.rabbit_node,
        registry_shards=args.registry_shards,
    )
    quiet_logs()

    def progress(line: str) -> None:
        print(f"rally bench fleet: {line}", file=sys.stderr, flush=True)

    report = asyncio.run(_until_signalled(run_fleet_bench(options, progress)))
    path = write_fleet(report, args.out)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_fleet(report))
        print(f"\nwritten: {path}")
    return 1 if report["errors"] else 0


def register_history(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "history",
        help="views, start-up, failover, throughput and store size as the history grows",
        description="Build histories of base x each size (synthesized from the domain's own "
        "decisions, appended in batches), measure on each the CLI views, the dashboard, "
        "worker start-up and failover, store bytes per task and tasks/s, then a steady load "
        "with a short RALLY_RETENTION. Reports ratios of the largest history to the smallest. "
        "See docs/benchmarks.md.",
    )
    parser.add_argument("--base", type=int, default=1_000, metavar="N", help="tasks at 1x (1000)")
    parser.add_argument(
        "--sizes",
        type=_multiples,
        default=(1, 10, 100),
        metavar="LIST",
        help="multiples (1,10,100)",
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="where the histories go (default: SQLite files under var/bench; "
        "a postgresql:// URL gets a throw-away schema per size)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--out", type=Path, default=Path("bench") / "results", metavar="DIR",
        help="results directory (bench/results)",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, metavar="R", help="runs per figure (3)")
    parser.add_argument(
        "--throughput-tasks", type=int, default=500, metavar="N", help="tasks for tasks/s (500)"
    )
    parser.add_argument(
        "--retention", default="30s", metavar="DURATION", help="RALLY_RETENTION of the run (30s)"
    )
    parser.add_argument(
        "--retention-duration",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="steady load with retention on (180; 0 skips the retention run)",
    )
    parser.add_argument("--no-check", action="store_true", help="skip check_history")
    parser.add_argument("--no-fleet", action="store_true", help="skip start-up, failover, tasks/s")
    parser.add_argument(
        "--quick", action="store_true", help="one run of each figure, 50 tasks/s, 20 s retention"
    )
    parser.set_defaults(func=run_history)


def run_history(args: argparse.Namespace) -> int:
    from broker.settings import BrokerSettings
    from workers.bench.history_report import format_table, write_report
    from workers.bench.history_run import HistoryOptions
    from workers.bench.history_run import run_history as measure
    from workers.cli.main import UserError
    from workers.runtime.logs import quiet_logs

    try:
        options = HistoryOptions(
            base=args.base,
            sizes=args.sizes,
            store_url=args.store or None,
            amqp_url=BrokerSettings.from_env().amqp_url,
            runs=args.runs,
            throughput_tasks=args.throughput_tasks,
            retention=args.retention,
            retention_s=args.retention_duration,
            check=not args.no_check,
            fleet=not args.no_fleet,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.quick:
        options = options.quickened()
    quiet_logs()

    def progress(line: str) -> None:
        print(f"rally bench history: {line}", file=sys.stderr, flush=True)

    report = asyncio.run(_until_signalled(measure(options, progress)))
    paths = write_report(report, args.out)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
        print("\nwritten: " + ", ".join(str(p) for p in paths))
    return 1 if report["history"]["errors"] else 0


def _multiples(text: str) -> tuple[int, ...]:
    try:
        return _counts(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give multiples of --base of at least 1, e.g. 1,10,100"
        ) from None


def _parts(text: str) -> frozenset[str]:
    parts = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = sorted(parts - set(PARTS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown part {', '.join(unknown)}: choose from {', '.join(PARTS)}"
        )
    return parts


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers like 1,2,4") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("replica counts must be at least 1, e.g. 1,2,4")
    return counts


def options_from(args: argparse.Namespace) -> BenchOptions:
    from broker.settings import BrokerSettings

    options = BenchOptions(
        amqp_url=BrokerSettings.from_env().amqp_url,
        tasks=args.tasks,
        runs=args.runs,
        window=args.window,
        replicas=args.replicas,
        agents=args.agents,
        agent_capacity=args.agent_capacity,
        floor_window=args.floor_window,
        celery_pool=args.celery_pool,
        celery_concurrency=args.celery_concurrency,
        scaling=args.scaling,
        store_url=args.store or None,
        pg_url=args.pg or None,
        skip=args.skip,
        out=args.out,
        profile=args.profile,
    )
    return options.quickened() if args.quick else options


def run(args: argparse.Namespace) -> int:
    from workers.bench.results import timestamp, write_results
    from workers.bench.run import run_bench
    from workers.bench.table import format_table
    from workers.cli.main import UserError

    try:
        options = options_from(args)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    stamp = timestamp()

    def progress(line: str) -> None:
        print(f"rally bench: {line}", file=sys.stderr, flush=True)

    report = asyncio.run(_until_signalled(run_bench(options, progress)))
    paths = write_results(report, options.out, stamp)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
        print("\nwritten: " + ", ".join(str(p) for p in paths.values() if p is not None))
    return 1 if report["errors"] else 0


async def _until_signalled(work: Any) -> dict[str, Any]:
    """SIGTERM stops the bench like Ctrl-C does: cleanly, every process and queue removed."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        result: dict[str, Any] = await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    return result
