"""`rally task show ID` (the whole timeline of one task) and `rally task list` (the read model).

``list`` answers from the tasks read model, caught up to the store's last
position first, so it is current with or without workers running and costs the
tail plus the page, not the history. ``show`` reads the task's own stream; a
task whose history retention archived answers its final state from its row. A
record ``show`` cannot decode (a newer release's event, a corrupted row) is shown
as a line saying so, the rest as usual, and the state line says the state may be
incomplete: the history is worth more than a clean failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from workers.cli.main import UserError
from workers.dlq.views import parse_since
from workers.readmodels.sql import database_for
from workers.readmodels.task_queries import (
    BadCursor,
    TaskFilter,
    TaskPage,
    TaskRow,
    get_task,
    list_tasks,
    tasks_runner,
)
from workers.runtime.logs import quiet_logs
from workers.store import open_store
from workers.store.errors import StoreError
from workers.tasks.timeline import Timeline, read_timeline, task_row

STATES = ("pending", "assigned", "running", "failed", "succeeded", "cancelled", "dead")
DEFAULT_LIMIT = 100
EXPIRED = "expired (its history was archived)"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("task", help="inspect tasks")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="a task's timeline: placed where and why, retries, end")
    show.add_argument("task_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="the same, as JSON")
    show.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    show.set_defaults(func=run_show)
    lst = actions.add_parser("list", help="tasks with their current state, newest first")
    lst.add_argument("--state", choices=STATES)
    lst.add_argument("--capability", metavar="NAME")
    lst.add_argument("--agent", metavar="AGENT_ID", help="tasks placed on this agent")
    lst.add_argument("--since", metavar="WHEN", help="submitted since: 30m, 2h, 7d or an ISO time")
    lst.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help="page size")
    lst.add_argument("--cursor", metavar="CURSOR", help="the next page (printed after a page)")
    lst.add_argument(
        "--json",
        action="store_true",
        help='JSON Lines, one task each; then {"next_cursor": ...} if there are more',
    )
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
        timeline = await read_timeline(store, task_id)
        row = None if timeline.entries else await _row(store, task_id)
    finally:
        await store.close()
    if not timeline.entries:
        if row is None or not row.expired:
            raise UserError(f"no task {task_id} in the history")
        if as_json:
            print(json.dumps({**row.to_json(), "timeline": []}, indent=2))
        else:
            print(f"task {task_id}: {row.state}, {EXPIRED}")
        return 0
    if as_json:
        shown = {
            **task_row(timeline.task),
            "incomplete": timeline.incomplete,
            "unreadable_events": timeline.unreadable,
            "timeline": timeline.entries,
        }
        print(json.dumps(shown, indent=2, default=str))
        return 0
    print(state_line(task_id, timeline))
    for entry in timeline.entries:
        print(f"  {entry['at']}  {entry['type']:<19} {entry['summary']}")
    return 0


def state_line(task_id: UUID, timeline: Timeline) -> str:
    # no state: the stream holds no readable TaskSubmitted (yet)
    line = f"task {task_id}: {timeline.task.state or 'unknown'}"
    if timeline.incomplete:
        n = timeline.unreadable
        line += (
            f" (may be incomplete: {n} event{'s' if n > 1 else ''} could not be read, shown below)"
        )
    return line


async def _row(store: Any, task_id: UUID) -> TaskRow | None:
    """The task's read-model row (what is left of a task whose streams were archived).

    No catching up: a row is marked expired long after the task ended."""
    try:
        return await get_task(database_for(store), task_id)
    except StoreError:  # no read model in this store yet
        return None


def run_list(args: argparse.Namespace) -> int:
    quiet_logs()
    if args.limit < 1:
        raise UserError("--limit must be at least 1")
    since: datetime | None = None
    if args.since:
        try:
            since = parse_since(args.since, datetime.now(UTC))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    where = TaskFilter(args.state, args.capability, args.agent, since)
    page = asyncio.run(_list(args.store, where, args.limit, args.cursor))
    if args.json:
        for row in page.rows:
            print(json.dumps(row.to_json()))
        if page.next_cursor:
            print(json.dumps({"next_cursor": page.next_cursor}))
        return 0
    print(f"{'TASK':<36}  {'STATE':<9}  {'CAPABILITY':<16}  {'PRIO':>4}  {'TRY':>3}  AGENT")
    for row in page.rows:
        print(
            f"{row.task_id:<36}  {row.state:<9}  {row.capability or '':<16}  "
            f"{row.priority if row.priority is not None else '':>4}  {row.attempt:>3}  "
            f"{row.agent_id or ''}{'  (expired)' if row.expired else ''}"
        )
    if page.next_cursor:
        print(f"more: {next_command(args, since, page.next_cursor)}")
    return 0


async def _list(url: str | None, where: TaskFilter, limit: int, cursor: str | None) -> TaskPage:
    store = open_store(url)
    await store.start()
    try:
        runner = await tasks_runner(store)
        for health in runner.health():
            if health.stopped:  # answer anyway, but say the view is behind and why
                print(
                    f"warning: the {health.name} view stopped before position "
                    f"{health.error_position}: {health.error}; tasks changed since are not shown",
                    file=sys.stderr,
                )
        return await list_tasks(runner.db, where, limit=limit, cursor=cursor)
    except BadCursor as exc:
        raise UserError(str(exc)) from None
    finally:
        await store.close()


def next_command(args: argparse.Namespace, since: datetime | None, cursor: str) -> str:
    """The exact command for the next page (``--since`` as the time it meant)."""
    argv = ["rally", "task", "list"]
    for flag, value in (("--state", args.state), ("--capability", args.capability)):
        if value:
            argv += [flag, value]
    if args.agent:
        argv += ["--agent", args.agent]
    if since is not None:
        argv += ["--since", since.isoformat()]
    if args.limit != DEFAULT_LIMIT:
        argv += ["--limit", str(args.limit)]
    if args.json:
        argv.append("--json")
    if args.store:
        argv += ["--store", args.store]
    return shlex.join([*argv, "--cursor", cursor])
