"""`rally status`: queues, agents, tasks and dead letters at a glance."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from broker.connection import BrokerConnection
from broker.inspect import queue_stats
from broker.settings import BrokerSettings
from workers.cli.agents_cmd import agent_rows
from workers.dlq import dead_letter_counts, open_archive
from workers.runtime.settings import WORKERS
from workers.store import default_store_url, open_store
from workers.tasks.timeline import all_tasks


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "status", help="queue depths and consumers, agents, tasks by state, dead letters"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    status = asyncio.run(collect(args.store or default_store_url(), BrokerSettings.from_env()))
    if args.json:
        print(json.dumps(status))
    else:
        render(Console(), status)
    return 0


async def collect(store_url: str, settings: BrokerSettings) -> dict[str, Any]:
    store = open_store(store_url)
    await store.start()
    try:
        agents = await agent_rows(store)
        tasks = Counter(task.state or "unknown" for task in await all_tasks(store))
    finally:
        await store.close()
    archive = open_archive(store_url)
    await archive.start()
    try:
        dead = await dead_letter_counts(archive)
    finally:
        await archive.close()
    conn = await BrokerConnection(settings, role="status").connect()
    try:
        topology = conn.topology
        names = [topology.worker_queue(w) for w in WORKERS]
        names += [
            topology.inbox_queue(a["agent_id"]).name for a in agents if a["status"] not in ("left",)
        ]
        names += [f"{n}.dlq" for n in list(names)] + [topology.shared_dlq]
        stats = await queue_stats(conn, names)
    finally:
        await conn.close()
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
        "tasks": dict(tasks),
        "dead_letters": [
            {"queue": queue, "reason": reason, "count": count}
            for (queue, reason), count in sorted(dead.items())
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
    if status["dead_letters"]:
        dead = Table(title="dead letters waiting (rally dlq list)")
        for column in ("queue", "reason", "count"):
            dead.add_column(column)
        for d in status["dead_letters"]:
            dead.add_row(d["queue"], d["reason"], str(d["count"]))
        console.print(dead)
    else:
        console.print("dead letters: none waiting")
