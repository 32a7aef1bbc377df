"""`rally demo`: the fleet running in front of you, ending with a verdict from the history."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.progress import Progress as Bar
from rich.table import Table

from workers.demo.run import DemoOptions, DemoResult, Progress, run_demo


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run workers, simulated agents and a workload with failures, then a summary"
    )
    parser.add_argument("--replicas", type=int, default=2, help="replicas of each worker (2)")
    parser.add_argument("--agents", type=int, default=12, help="simulated agents (12)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks to submit (1000)")
    parser.add_argument("--seed", type=int, default=7, help="workload seed")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after N seconds")
    parser.add_argument("--json", action="store_true", help="print one final JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = DemoOptions(args.replicas, args.agents, args.tasks, args.seed, args.timeout)
    err = Console(stderr=True)
    live_ok = err.is_terminal and not args.json
    view = _LiveView(err) if live_ok else _PlainView(err, quiet=args.json)
    with view:
        result = asyncio.run(run_demo(options, view.update))
    if args.json:
        print(json.dumps(result.summary | {"ok": result.ok}))
    else:
        _print_summary(Console(), result)
    return 0 if result.ok else 1


class _PlainView:
    """A line every few seconds, for logs and CI."""

    def __init__(self, console: Console, *, quiet: bool) -> None:
        self.console, self.quiet, self._last = console, quiet, 0.0

    def __enter__(self) -> _PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, p: Progress) -> None:
        if self.quiet or time.monotonic() - self._last < 3:
            return
        self._last = time.monotonic()
        self.console.print(
            f"[{p.phase}] {p.done}/{p.total} tasks done, {p.rate:.0f}/s, "
            f"{p.agents_alive} agents alive" + (f", lost: {', '.join(p.lost)}" if p.lost else "")
        )


class _LiveView:
    def __init__(self, console: Console) -> None:
        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
        )
        self.task = self.bar.add_task("tasks", total=1, rate="")
        self.live = Live(console=console, refresh_per_second=8)

    def __enter__(self) -> _LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def update(self, p: Progress) -> None:
        self.bar.update(
            self.task,
            total=p.total,
            completed=p.done,
            description=p.phase,
            rate=f"{p.rate:.0f} tasks/s",
        )
        agents = Table(title="agents (load = tasks in hand)", expand=False)
        agents.add_column("agent")
        agents.add_column("load", justify="right")
        for agent, load in sorted(p.agent_load.items()):
            name = f"[red]{agent} (lost)[/]" if agent in p.lost else agent
            agents.add_row(name, "█" * load + f" {load}")
        self.live.update(Group(self.bar, agents))


def _print_summary(console: Console, result: DemoResult) -> None:
    s = result.summary
    table = Table(title="rally demo: summary", show_header=False)
    for key in (
        "tasks_submitted",
        "succeeded",
        "failed",
        "cancelled",
        "dead",
        "reassigned",
        "dead_letters",
        "elapsed_s",
        "tasks_per_s",
        "killed_agent",
        "history_events",
    ):
        table.add_row(key, str(s[key]))
    console.print(table)
    if result.ok:
        console.print(
            "[green]every task reached the state the scenario expects, and the "
            "history keeps every promise[/]"
        )
    else:
        for line in result.mismatches[:10] + result.report.violations[:10]:
            console.print(f"[red]✗ {line}[/]")
        if s["dead_letters"] < 3:
            console.print(f"[red]✗ expected at least 3 dead letters, found {s['dead_letters']}[/]")
    console.print("what it left to explore (its history and dead letters stay):")
    for what, command in s["explore"].items():
        console.print(f"  {what.replace('_', ' ')}: {command}", highlight=False, soft_wrap=True)
    sys.stdout.flush()
