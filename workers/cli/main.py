"""The `rally` command line: one module per command group, each with a `register` function.

Errors a user can cause are one clear sentence on stderr and a non-zero exit;
tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from broker.errors import BrokerError
from broker.logs import configure_logging
from contracts import ContractError

# each module defines `register(subparsers)` and sets `func` on its parsers
COMMAND_MODULES = (
    "workers.cli.schema_cmd",
    "workers.cli.events_cmd",
    "workers.cli.worker_cmd",
    "workers.cli.status_cmd",
    "workers.cli.agents_cmd",
    "workers.cli.task_cmd",
    "workers.cli.dlq_cmd",
    "workers.cli.demo_cmd",
    "workers.cli.bench_cmd",
    "workers.cli.dashboard_cmd",
    "workers.cli.conformance_cmd",
)


class UserError(Exception):
    """A mistake the user can fix; printed as one sentence, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rally",
        description="rallypoint: coordinate a fleet of agents over RabbitMQ.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a command group not built yet
            raise
        module.register(sub)
    return parser


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    # commands talk to people; logs below WARNING belong to `rally worker`, which sets its own
    configure_logging(os.environ.get("RALLY_LOG_LEVEL", "WARNING"))
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        raise SystemExit(2)
    try:
        code = func(args)
    except KeyboardInterrupt:
        code = 130
    except (UserError, BrokerError, ContractError) as exc:
        print(f"rally: {exc}", file=sys.stderr)
        code = 2
    except BrokenPipeError:
        code = 0
    raise SystemExit(code)


if __name__ == "__main__":
    # run the imported module's main, not this __main__ copy: the commands raise
    # workers.cli.main.UserError, which a copy of the class here would not catch
    from workers.cli.main import main as installed_main

    installed_main()
