"""`rally agents`: every agent the history knows, its state, manifest and current load.

`rally agents provision ID` gives an agent a broker user of its own (workers/cli/provision.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from broker.access import NotProvisionable
from broker.settings import BrokerSettings
from workers.cli.main import UserError
from workers.cli.provision import ProvisionError, provision, render
from workers.registry.state import STREAM_PREFIX, Agent, agent_of, evolve
from workers.runtime.logs import quiet_logs
from workers.runtime.messages import load_event
from workers.store import open_store
from workers.store.base import EventStore
from workers.tasks.state import ACTIVE, Task
from workers.tasks.timeline import all_tasks

PAGE = 1000


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("agents", help="list the fleet's agents")
    parser.add_argument("--json", action="store_true", help="JSON Lines, one agent each")
    parser.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="agents_action", metavar="ACTION")
    prov = actions.add_parser(
        "provision",
        help="create a broker user for one agent, restricted to its own inbox",
        description="Create the broker user ID (rabbitmqctl), allowed to publish agent "
        "commands and to consume its own inbox only, and declare that inbox. Prints the "
        "rabbitmqctl commands instead with --print, or where rabbitmqctl cannot be used.",
    )
    prov.add_argument("agent_id", metavar="ID", help="the agent id, which is the user name")
    prov.add_argument("--password", default=None, help="its password (default: generated)")
    prov.add_argument("--vhost", default=None, help="vhost (default: the one of RALLY_AMQP_URL)")
    prov.add_argument(
        "--print", dest="print_only", action="store_true", help="print the commands, change nothing"
    )
    prov.add_argument("--json", dest="as_json", action="store_true", help="one JSON object")
    prov.set_defaults(func=run_provision)


async def agent_rows(
    store: EventStore, tasks: Iterable[Task] | None = None
) -> list[dict[str, Any]]:
    """Agents by the one agent fold, each with the tasks the one task fold says it runs.

    ``tasks``: every task's state, if the caller has folded them already.
    """
    agents: dict[str, Agent] = {}
    position = 0
    while True:
        page = await store.read_all(position, PAGE, stream_prefix=STREAM_PREFIX)
        for record in page:
            agent_id = agent_of(record.stream)
            if agent_id is not None:
                agent = agents.get(agent_id) or Agent(agent_id)
                agents[agent_id] = evolve(agent, load_event(record))
            position = record.position
        if len(page) < PAGE:
            break
    load = running_load(await all_tasks(store) if tasks is None else tasks)
    rows = []
    for agent in sorted(agents.values(), key=lambda a: a.agent_id):
        rows.append(
            {
                "agent_id": agent.agent_id,
                "status": agent.status,
                "capabilities": list(agent.capabilities),
                "capacity": agent.capacity,
                "load": load[agent.agent_id],
                "labels": agent.labels,
                "software_version": agent.software_version,
                "heartbeat_interval_s": agent.heartbeat_interval_s,
            }
        )
    return rows


def running_load(tasks: Iterable[Task]) -> Counter[str]:
    """How many tasks each agent holds an attempt of (assigned or running)."""
    return Counter(t.agent_id for t in tasks if t.state in ACTIVE and t.agent_id is not None)


def run_provision(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(
            provision(
                args.agent_id,
                settings=BrokerSettings.from_env(),
                password=args.password,
                vhost=args.vhost,
                print_only=args.print_only,
            )
        )
    except (NotProvisionable, ProvisionError) as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(result.as_json()) if args.as_json else render(result))
    return 0


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
