"""`rally task show ID` (the whole timeline of one task) and `rally task list`."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any
from uuid import UUID

from workers.cli.main import UserError
from workers.runtime.logs import quiet_logs
from workers.store import open_store
from workers.tasks.timeline import all_tasks, task_row, task_timeline

STATES = ("pending", "assigned", "running", "failed", "succeeded", "cancelled", "dead")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("task", help="inspect tasks")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="a task's timeline: placed where and why, retries, end")
    show.add_argument("task_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="the same, as JSON")
    show.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    show.set_defaults(func=run_show)
    lst = actions.add_parser("list", help="every task with its current state")
    lst.add_argument("--state", choices=STATES)
    lst.add_argument("--json", action="store_true", help="JSON Lines, one task each")
    lst.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    lst.set_defaults(func=run_list)


def run_show(args: argparse.Namespace) -> int:
    quiet_logs()
    try:
        task_id = UUID(args.task_id)
    except ValueError:
        raise UserError(f"{args.task_id!r} is not a task id (a UUID)") from None
    return asyncio.run(_show(task_id, args.store, args.json))


async def _show(task_id: UUID, url: str | None, as_json: bool) -> int:
    store = open_store(url)
    await store.start()
    try:
        task, entries = await task_timeline(store, task_id)
    finally:
        await store.close()
    if not entries:
        raise UserError(f"no task {task_id} in the history")
    if as_json:
        print(json.dumps({**task_row(task), "timeline": entries}, indent=2, default=str))
        return 0
    print(f"task {task_id}: {task.state}")
    for entry in entries:
        print(f"  {entry['at']}  {entry['type']:<19} {entry['summary']}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    quiet_logs()
    return asyncio.run(_list(args.store, args.state, args.json))


async def _list(url: str | None, state: str | None, as_json: bool) -> int:
    store = open_store(url)
    await store.start()
    try:
        tasks = await all_tasks(store)
    finally:
        await store.close()
    rows = [task_row(t) for t in tasks if state is None or t.state == state]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'TASK':<36}  {'STATE':<9}  {'CAPABILITY':<16}  {'PRIO':>4}  {'TRY':>3}  AGENT")
    for row in rows:
        print(
            f"{row['task_id']:<36}  {row['state']:<9}  {row['capability'] or '':<16}  "
            f"{row['priority']:>4}  {row['attempt']:>3}  {row['agent_id'] or ''}"
        )
    return 0
