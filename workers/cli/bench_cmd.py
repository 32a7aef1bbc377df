"""`rally bench`: measured speed. Today it measures the event store; the end-to-end
comparison against the raw broker and Celery (issue 7) is not built yet."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workers.store.bench import format_results
from workers.store.bench import run as run_store_bench

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "bench", help="measure store appends/s (SQLite and PostgreSQL, single and batched)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument(
        "--pg",
        default=os.environ.get("RALLY_BENCH_PG_URL", DEFAULT_PG),
        help="PostgreSQL URL to bench ('' to skip)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scratch = Path("var") / "bench"
    scratch.mkdir(parents=True, exist_ok=True)
    urls = {"sqlite": f"sqlite:///{scratch / 'store-bench.db'}"}
    if args.pg:
        urls["postgres"] = args.pg
    results = asyncio.run(run_store_bench(urls))
    if args.json:
        print(json.dumps({"store": [asdict(r) for r in results]}))
    else:
        print(format_results(results))
    return 0
