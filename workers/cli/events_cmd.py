"""`rally events dump|tail`: the history as JSON Lines, for operators and auditors."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from workers.cli.events import dump_events
from workers.store import default_store_url, open_store


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("events", help="read the event history")
    events = parser.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("dump", "write the history as JSON Lines, one event per line"),
        ("tail", "like dump, then keep printing new events as they are recorded"),
    ):
        action = events.add_parser(name, help=help_text)
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
        action.set_defaults(func=run, follow=name == "tail")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    store = open_store(args.store or default_store_url())
    await store.start()
    try:
        position: int = args.from_position
        while True:
            last = await dump_events(
                store, sys.stdout, from_position=position, stream_prefix=args.stream
            )
            sys.stdout.flush()
            if not args.follow:
                return 0
            position = max(position, last)
            await asyncio.sleep(0.5)
    finally:
        await store.close()
