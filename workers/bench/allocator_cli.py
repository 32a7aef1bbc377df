"""`rally bench allocator`: its arguments and its run (the measurement is allocator_ceiling)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any


def register_allocator(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "allocator",
        help="the allocator's CPU per placed task and per event, no broker (its ceiling)",
        description="Drive the allocator's real code path (its view, decisions and store "
        "appends) with --agents joined and --tasks submitted, reported started and succeeded "
        "as the registry and the task manager record them, on a fresh store. Reports CPU per "
        "placed task and per event folded, and placements per CPU second. The broker is not "
        "involved: the transport is not measured.",
    )
    parser.add_argument("--agents", type=int, default=10_000, metavar="N", help="agents (10000)")
    parser.add_argument("--tasks", type=int, default=20_000, metavar="N", help="tasks (20000)")
    parser.add_argument(
        "--batch", type=int, default=200, metavar="N", help="submits between decisions (200)"
    )
    parser.add_argument(
        "--capabilities", type=int, default=4, metavar="N", help="capability pool (4)"
    )
    parser.add_argument(
        "--capacity", type=int, default=4, metavar="N", help="tasks each agent runs at once (4)"
    )
    parser.add_argument(
        "--store", default=None, metavar="URL",
        help="a postgresql:// URL gets a throw-away schema (default: a fresh SQLite file)",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_allocator)


def run_allocator(args: argparse.Namespace) -> int:
    from workers.bench.allocator_ceiling import CeilingOptions, format_ceiling, run_ceiling
    from workers.cli.main import UserError
    from workers.runtime.logs import quiet_logs

    try:
        options = CeilingOptions(
            agents=args.agents,
            tasks=args.tasks,
            batch=args.batch,
            capabilities=args.capabilities,
            per_agent=min(2, args.capabilities),
            capacity=args.capacity,
            store_url=args.store or None,
            profile=args.profile,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    quiet_logs()

    def progress(line: str) -> None:
        print(f"rally bench allocator: {line}", file=sys.stderr, flush=True)

    report = asyncio.run(run_ceiling(options, progress))
    print(json.dumps(report) if args.json else format_ceiling(report))
    return 0
