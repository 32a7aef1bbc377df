"""`rally worker registry|tasks|allocator|all [--replicas N]`: run worker replicas as processes.

Each replica is its own OS process (``python -m workers.runtime.process``),
so replicas share nothing but the broker and the store, as in production.
SIGTERM / SIGINT are forwarded; each replica stops gracefully (its consumer
stops taking messages and finishes those in hand, its relay flushes) and this
command exits when they all have.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from workers.runtime.settings import WORKERS


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "worker", help="run coordination workers (N processes each)"
    )
    parser.add_argument("worker", choices=(*WORKERS, "all"))
    parser.add_argument("--replicas", type=int, default=1, metavar="N", help="processes per worker")
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus /metrics: the k-th process started on PORT+k",
    )
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    from broker.metrics import port_number  # only when used: `rally` starts without prometheus

    return port_number(text)


def commands(worker: str, replicas: int, metrics_port: int | None = None) -> list[list[str]]:
    names = WORKERS if worker == "all" else (worker,)
    out = [
        [sys.executable, "-m", "workers.runtime.process", "--worker", name, "--replica", str(i)]
        for name in names
        for i in range(replicas)
    ]
    if metrics_port is not None:  # one port per process, in the order they are listed
        for k, command in enumerate(out):
            command += ["--metrics-port", str(metrics_port + k if metrics_port else 0)]
    return out


def run(args: argparse.Namespace) -> int:
    if args.replicas < 1:
        from workers.cli.main import UserError

        raise UserError("--replicas must be at least 1")
    plan = commands(args.worker, args.replicas, args.metrics_port)
    children = [subprocess.Popen(cmd) for cmd in plan]

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    codes: list[int] = []
    for child in children:
        while True:
            try:
                codes.append(child.wait())
                break
            except KeyboardInterrupt:  # the handler forwards; keep waiting for the children
                time.sleep(0.05)
    return max((abs(c) for c in codes), default=0)
