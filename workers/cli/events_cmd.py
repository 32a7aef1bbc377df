"""`rally events dump|tail|export|import|prune`: the history as JSON Lines, its archive,
and retention run by hand."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workers.cli.events import dump_events
from workers.store import default_store_url, open_store


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "events", help="read, export, import and prune the event history"
    )
    events = parser.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("dump", "write the history as JSON Lines, one event per line"),
        ("tail", "like dump, then keep printing new events as they are recorded"),
        ("export", "write the history to a gzip JSON Lines file (the archive format)"),
    ):
        action = events.add_parser(name, help=help_text)
        _from_and_stream(action)
        if name == "export":
            action.add_argument("--to", required=True, type=Path, metavar="FILE")
            action.set_defaults(func=run_export)
        else:
            action.set_defaults(func=run, follow=name == "tail")
    action = events.add_parser(
        "import",
        help="append the events of an export or archive file (gzip or plain JSON Lines)",
        description="Events keep stream, version, id, data, metadata and recorded_at and get "
        "this store's next positions; an id the store already holds is skipped.",
    )
    action.add_argument("file", type=Path, metavar="FILE")
    action.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    action.set_defaults(func=run_import)
    action = events.add_parser(
        "prune",
        help="run retention once: archive and delete old ended tasks, forget old message ids",
    )
    action.add_argument(
        "--dry-run", action="store_true", help="only say which tasks would go; change nothing"
    )
    action.add_argument(
        "--vacuum",
        action="store_true",
        help="then rewrite the store to shrink its files (SQLite VACUUM, PostgreSQL VACUUM "
        "FULL: locks the tables while it runs)",
    )
    action.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")
    action.set_defaults(func=run_prune)


def _from_and_stream(action: argparse.ArgumentParser) -> None:
    action.add_argument(
        "--from",
        dest="from_position",
        type=int,
        default=0,
        metavar="POSITION",
        help="start after this global position (default: the beginning)",
    )
    action.add_argument("--stream", metavar="PREFIX", help="only streams starting with PREFIX")
    action.add_argument("--store", default=None, help="store URL (default: RALLY_STORE_URL)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    store = open_store(args.store or default_store_url())
    await store.start()
    try:
        position: int = args.from_position
        while True:
            dumped = await dump_events(
                store, sys.stdout, from_position=position, stream_prefix=args.stream
            )
            sys.stdout.flush()
            if not args.follow:
                return 0
            position = dumped.last_position  # a position, never a count: there are gaps
            await asyncio.sleep(0.5)
    finally:
        await store.close()


def run_export(args: argparse.Namespace) -> int:
    return asyncio.run(_export(args))


async def _export(args: argparse.Namespace) -> int:
    from workers.retention.archive import export_file

    store = open_store(args.store or default_store_url())
    await store.start()
    try:
        written = await export_file(
            store, args.to, from_position=args.from_position, stream_prefix=args.stream
        )
    finally:
        await store.close()
    print(f"exported {written} events to {args.to}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    return asyncio.run(_import(args))


async def _import(args: argparse.Namespace) -> int:
    from workers.cli.main import UserError
    from workers.retention.archive import ArchiveError, import_file
    from workers.store import StoreError

    if not args.file.is_file():
        raise UserError(f"no such file: {args.file}")
    store = open_store(args.store or default_store_url())
    await store.start()
    try:
        imported, skipped = await import_file(store, args.file)
    except (ArchiveError, StoreError) as exc:
        raise UserError(str(exc)) from None
    finally:
        await store.close()
    print(f"imported {imported} events, skipped {skipped} already here", file=sys.stderr)
    return 0


def run_prune(args: argparse.Namespace) -> int:
    return asyncio.run(_prune(args))


async def _prune(args: argparse.Namespace) -> int:
    from workers.cli.main import UserError
    from workers.retention.job import run_once
    from workers.retention.policy import RetentionSettings, SettingError

    try:
        settings = RetentionSettings.from_env()
    except SettingError as exc:
        raise UserError(str(exc)) from None
    store = open_store(args.store or default_store_url())
    await store.start()
    try:
        report = await run_once(store, settings, datetime.now(UTC), dry_run=args.dry_run)
        if args.vacuum and not args.dry_run:
            await store.reclaim_space(full=True)
    finally:
        await store.close()
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(report.deleted_tasks)} ended tasks ({report.events_deleted} events)")
    for task_id in report.deleted_tasks if args.dry_run else ():
        print(f"  {task_id}")
    for why, count in sorted(report.kept.items()):
        print(f"kept {count}: {why}")
    if not args.dry_run:
        print(f"forgot {report.processed_pruned} processed-message ids")
        for path in report.archives:
            print(f"archived to {path}")
    return 0
