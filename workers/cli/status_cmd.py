"""`rally status`: queues, agents, tasks and dead letters at a glance, and scaling signals.

The worker queues are observed twice, ``--interval`` seconds apart, to give
publish and ack rates and a suggested replica count per queue (see
workers/queue_signals.py for where the rates come from, workers/scaling.py
for the arithmetic, docs/operations.md for how to use them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from broker.connection import BrokerConnection
from broker.inspect import MANAGEMENT_URL_ENV, queue_stats
from broker.settings import BrokerSettings
from workers.allocator.holds import read_holds
from workers.dlq import dead_letter_counts, open_archive
from workers.queue_signals import (
    DEFAULT_INTERVAL_S,
    fleet_queue_names,
    registry_shard_count,
    sample_scaling,
)
from workers.readmodels import read_health
from workers.readmodels.agents import agent_list, fleet_runner
from workers.readmodels.task_queries import count_by_state
from workers.scaling import DEFAULT_DRAIN_TARGET_S, DEFAULT_MAX_REPLICAS, ScalingPolicy
from workers.store import default_store_url, open_store


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "status", help="queue depths and consumers, agents, tasks by state, dead letters, scaling"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help=f"time between the two samples the rates come from (default {DEFAULT_INTERVAL_S})",
    )
    parser.add_argument(
        "--drain-target",
        type=float,
        default=DEFAULT_DRAIN_TARGET_S,
        metavar="SECONDS",
        help="suggest enough replicas to drain the backlog within this (default %(default)s)",
    )
    parser.add_argument(
        "--max-replicas",
        type=int,
        default=DEFAULT_MAX_REPLICAS,
        metavar="N",
        help="never suggest more replicas than this (default %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workers.cli.main import UserError

    if not 0 < args.interval < math.inf:
        raise UserError(f"--interval must be above 0 seconds and finite, got {args.interval}")
    try:
        policy = ScalingPolicy(drain_target_s=args.drain_target, max_replicas=args.max_replicas)
    except ValueError as exc:
        raise UserError(f"--drain-target / --max-replicas: {exc}") from None
    status = asyncio.run(
        collect(
            args.store or default_store_url(),
            BrokerSettings.from_env(),
            interval_s=args.interval,
            policy=policy,
            management_url=os.environ.get(MANAGEMENT_URL_ENV) or None,
        )
    )
    if args.json:
        print(json.dumps(status))
    else:
        render(Console(), status)
    return 0


async def collect(
    store_url: str,
    settings: BrokerSettings,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    policy: ScalingPolicy | None = None,
    management_url: str | None = None,
) -> dict[str, Any]:
    store = open_store(store_url)
    await store.start()
    try:
        # the read models, caught up: the cost is the tail since the last catch-up and the
        # size of the answer (agents, a count per state), not the history's age
        runner = await fleet_runner(store)
        agents = await agent_list(runner.db)
        tasks = await count_by_state(runner.db)
        health = await read_health(runner.db)
        held = await read_holds(store)
        archive = open_archive(store_url)
        await archive.start()
        try:
            dead = await dead_letter_counts(archive)
        finally:
            await archive.close()
        conn = await BrokerConnection(settings, role="status").connect()
        try:
            shards = await registry_shard_count(conn)
            present = (a["agent_id"] for a in agents if a["status"] != "left")
            names = fleet_queue_names(conn.topology, present, shards)
            stats = await queue_stats(conn, names)
            # the store stays open: its event positions mark the sampling window
            scaling = await sample_scaling(
                conn,
                store,
                interval_s=interval_s,
                policy=policy,
                management_url=management_url,
            )
        finally:
            await conn.close()
    finally:
        await store.close()
    return {
        "queues": [
            {"queue": s.name, "messages": s.messages, "consumers": s.consumers}
            for s in stats
            if s.exists
        ],
        "agents": {
            "by_status": dict(Counter(a["status"] for a in agents)),
            "list": [{k: a[k] for k in ("agent_id", "status", "load", "capacity")} for a in agents],
        },
        "tasks": tasks,
        "held_streams": held,
        "dead_letters": [
            {"queue": queue, "reason": reason, "count": count}
            for (queue, reason), count in sorted(dead.items())
        ],
        "scaling": scaling.as_json(),
        "read_models": [
            {
                "name": h.name,
                "position": h.position,
                "stopped": h.stopped,
                "error": h.error,
                "error_position": h.error_position,
            }
            for h in health
        ],
    }


def render(console: Console, status: dict[str, Any]) -> None:
    queues = Table(title="queues")
    for column in ("queue", "messages", "consumers"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for q in status["queues"]:
        queues.add_row(q["queue"], str(q["messages"]), str(q["consumers"]))
    console.print(queues)
    agents = Table(title="agents")
    for column in ("agent", "status", "load"):
        agents.add_column(column)
    for a in status["agents"]["list"]:
        colour = {"live": "green", "lost": "red"}.get(a["status"], "yellow")
        agents.add_row(a["agent_id"], f"[{colour}]{a['status']}[/]", f"{a['load']}/{a['capacity']}")
    console.print(agents)
    console.print(
        "tasks: " + (", ".join(f"{k} {v}" for k, v in sorted(status["tasks"].items())) or "none")
    )
    for model in status.get("read_models", []):
        if model["stopped"]:
            console.print(
                f"[red]read model {model['name']} stopped[/] at position "
                f"{model['error_position']}: {model['error']}"
            )
    for h in status.get("held_streams", []):
        console.print(
            f"[red]held:[/] {h['stream']} at position {h['position']} "
            f"({h['type']} v{h['schema_version']}): {h['reason']}"
        )
    if status["dead_letters"]:
        dead = Table(title="dead letters waiting (rally dlq list)")
        for column in ("queue", "reason", "count"):
            dead.add_column(column)
        for d in status["dead_letters"]:
            dead.add_row(d["queue"], d["reason"], str(d["count"]))
        console.print(dead)
    else:
        console.print("dead letters: none waiting")
    render_scaling(console, status["scaling"])


def render_scaling(console: Console, scaling: dict[str, Any]) -> None:
    title = (
        f"scaling (rates over {scaling['interval_s']:.1f} s from the {scaling['rate_source']}, "
        f"drain target {scaling['drain_target_s']:g} s)"
    )
    table = Table(title=title)
    for column in ("queue", "mode", "depth", "consumers", "in/s", "out/s", "suggested", "why"):
        table.add_column(
            column, justify="right" if column not in ("queue", "mode", "why") else "left"
        )
    for q in scaling["queues"]:
        out = "?" if q["ack_rate"] is None else f"{q['ack_rate']:.1f}"
        table.add_row(
            q["queue"],
            q["mode"],
            str(q["depth"]),
            str(q["consumers"]),
            f"{q['publish_rate']:.1f}",
            out,
            str(q["suggested_replicas"]),
            q["reason"],
        )
    console.print(table)
    for note in scaling["notes"]:
        console.print(f"[yellow]note:[/] {note}")
