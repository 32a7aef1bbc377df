"""`rally agents`: every agent the history knows, its state, manifest and current load.

Read from the agents and tasks read models (workers/readmodels/agents.py), caught up first.

`rally agents provision ID` gives an agent a broker user of its own (workers/cli/provision.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from broker.access import NotProvisionable
from broker.settings import BrokerSettings
from workers.cli.main import UserError
from workers.cli.provision import ProvisionError, provision, render
from workers.readmodels.agents import agent_list, fleet_runner
from workers.readmodels.sql import ReadModelDb
from workers.runtime.logs import quiet_logs
from workers.store import open_store
from workers.store.base import EventStore


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


async def agent_rows(store: EventStore, *, db: ReadModelDb | None = None) -> list[dict[str, Any]]:
    """Agents from the agents read model (the registry's fold), each with the tasks the
    tasks read model says it holds; both caught up first. The cost follows the fleet and
    the tasks running now, not the history's age."""
    runner = await fleet_runner(store, db=db)
    return await agent_list(runner.db)


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
