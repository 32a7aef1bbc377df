"""`rally agents`: every agent the history knows, its state, manifest and current load."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from workers.allocator.projection import Projection
from workers.registry.domain import Agent, evolve
from workers.runtime.logs import quiet_logs
from workers.runtime.messages import load_event
from workers.store import open_store
from workers.store.base import EventStore

PAGE = 1000


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("agents", help="list the fleet's agents")
    parser.add_argument("--json", action="store_true", help="JSON Lines, one agent each")
    parser.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    parser.set_defaults(func=run)


async def agent_rows(store: EventStore) -> list[dict[str, Any]]:
    """Agents folded from their streams, with the running load from the allocator's view."""
    agents: dict[str, Agent] = {}
    view = Projection()
    position = 0
    while True:
        page = await store.read_all(position, PAGE)
        for record in page:
            view.apply(record)
            if record.stream.startswith("agent-"):
                agent_id = record.stream.removeprefix("agent-")
                agents[agent_id] = evolve(
                    agents.get(agent_id) or Agent(agent_id), load_event(record)
                )
            position = record.position
        if len(page) < PAGE:
            break
    rows = []
    for agent in sorted(agents.values(), key=lambda a: a.agent_id):
        tracked = view.agents.get(agent.agent_id)
        rows.append(
            {
                "agent_id": agent.agent_id,
                "status": agent.status,
                "capabilities": list(agent.capabilities),
                "capacity": agent.capacity,
                "load": len(tracked.inflight) if tracked else 0,
                "labels": agent.labels,
                "software_version": agent.software_version,
                "heartbeat_interval_s": agent.heartbeat_interval_s,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    quiet_logs()
    return asyncio.run(_run(args.store, args.json))


async def _run(url: str | None, as_json: bool) -> int:
    store = open_store(url)
    await store.start()
    try:
        rows = await agent_rows(store)
    finally:
        await store.close()
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'AGENT':<24}  {'STATUS':<8}  {'LOAD':>9}  CAPABILITIES")
    for row in rows:
        load = f"{row['load']}/{row['capacity']}"
        capabilities = ", ".join(row["capabilities"])
        print(f"{row['agent_id']:<24}  {row['status']:<8}  {load:>9}  {capabilities}")
    return 0
