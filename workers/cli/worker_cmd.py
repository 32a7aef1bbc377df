"""`rally worker registry|tasks|allocator|all [--replicas N] [--shards N]`: run worker replicas.

Each replica is its own OS process (``python -m workers.runtime.process``),
so replicas share nothing but the broker and the store, as in production.
``--shards N`` splits the registry's agents over N shards (``RALLY_REGISTRY_SHARDS``):
N × replicas registry processes, each with its shard (``--shard K``).
SIGTERM / SIGINT are forwarded; each replica stops gracefully (its consumer
stops taking messages and finishes those in hand, its relay flushes) and this
command exits when they all have.
"""

from __future__ import annotations

import argparse
import os
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
        "--shards",
        type=int,
        metavar="N",
        help="registry shards, 1..64, each with --replicas processes "
        "(default: RALLY_REGISTRY_SHARDS, else 1)",
    )
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


def commands(
    worker: str, replicas: int, metrics_port: int | None = None, shards: int = 1
) -> list[list[str]]:
    names = WORKERS if worker == "all" else (worker,)
    out: list[list[str]] = []
    for name in names:
        # a registry process per shard and replica; the others do not shard
        for shard in range(shards) if name == "registry" and shards > 1 else (None,):
            for i in range(replicas):
                command = [sys.executable, "-m", "workers.runtime.process", "--worker", name]
                command += ["--replica", str(i)]
                if shard is not None:
                    command += ["--shard", str(shard)]
                out.append(command)
    if metrics_port is not None:  # one port per process, in the order they are listed
        for k, command in enumerate(out):
            command += ["--metrics-port", str(metrics_port + k if metrics_port else 0)]
    return out


def _shards(given: int | None) -> int:
    from contracts.shards import SLOTS
    from workers.cli.main import UserError

    if given is None:
        text = os.environ.get("RALLY_REGISTRY_SHARDS", "1")
        try:
            given = int(text)
        except ValueError:
            raise UserError(f"RALLY_REGISTRY_SHARDS={text!r} is not a number") from None
    if not 1 <= given <= SLOTS:
        raise UserError(f"registry shards must be 1..{SLOTS}, not {given}")
    return given


def run(args: argparse.Namespace) -> int:
    if args.replicas < 1:
        from workers.cli.main import UserError

        raise UserError("--replicas must be at least 1")
    shards = _shards(args.shards)
    plan = commands(args.worker, args.replicas, args.metrics_port, shards)
    # every child is told the count (a registry shard owns its slots modulo it); the shard
    # itself comes with --shard, so none is inherited from this shell
    env = {**os.environ, "RALLY_REGISTRY_SHARDS": str(shards), "RALLY_REGISTRY_SHARD": "0"}
    children = [subprocess.Popen(cmd, env=env) for cmd in plan]

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
