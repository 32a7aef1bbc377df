"""`rally dlq list|show|replay|purge|export`: inspect, explain, fix and replay dead letters.

Everything reads the archive, never the queues: `list` (and `replay`) first
move what is waiting in the dead-letter queues into it, so what you see is
current and nothing is browsed in place. `--json` is for machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console

from broker.connection import BrokerConnection
from broker.errors import BrokerUnavailable
from broker.publisher import Publisher
from broker.settings import BrokerSettings
from workers.cli.main import UserError
from workers.dlq import render
from workers.dlq.archive import ArchiveError, DeadLetterArchive, NotFound, open_archive
from workers.dlq.directory import DlqDirectory, store_agent_ids
from workers.dlq.history import StoreHistory, operator
from workers.dlq.model import STATUSES, DeadLetter, Query, Status
from workers.dlq.mover import DeadLetterMover
from workers.dlq.purge import purge
from workers.dlq.replay import Replayer, Result
from workers.dlq.views import export_jsonl, letter_json, parse_since, summary_json
from workers.runtime.clock import SystemClock
from workers.store import EventStore, StoreError, default_store_url, open_store

log = structlog.get_logger(__name__)

FILTER_KEYS = ("queue", "reason", "type", "since")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "dlq", help="inspect, explain, replay and purge dead letters"
    )
    actions = parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        p.add_argument("--store", help="store URL (default: RALLY_STORE_URL)")
        p.set_defaults(func=run, action=name)
        return p

    ls = action("list", "dead letters, newest first, with counts by reason")
    _filters(ls)
    ls.add_argument("--status", choices=[*STATUSES, "all"], default="dead")
    ls.add_argument("--limit", type=int, help="at most this many lines")
    ls.add_argument("--no-drain", action="store_true", help="do not move waiting ones first")
    ls.add_argument("--json", action="store_true", help="a JSON list of objects")

    sh = action("show", "everything kept about one dead letter, and why it died")
    sh.add_argument("id", help="the id (or its first characters)")
    sh.add_argument("--json", action="store_true")

    rp = action("replay", "re-validate and publish dead letters again")
    rp.add_argument("ids", nargs="*", metavar="ID")
    rp.add_argument("--all", action="store_true", help="every dead letter")
    rp.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"select by {', '.join(FILTER_KEYS)} (repeatable)",
    )
    rp.add_argument("--dry-run", action="store_true", help="say what would happen; publish nothing")
    rp.add_argument("--rate", metavar="N/s", help="publish at most N a second")
    rp.add_argument("--edit", metavar="FILE", help="publish this body instead (one ID only)")
    rp.add_argument(
        "--to-origin",
        action="store_true",
        help="publish to the original exchange and routing key (default: only the queue "
        "it died in)",
    )
    rp.add_argument("--by", help="who is replaying (default: user@host)")
    rp.add_argument("--json", action="store_true")

    pg = action("purge", "mark dead letters as never to be replayed (kept, and recorded)")
    pg.add_argument("ids", nargs="*", metavar="ID")
    pg.add_argument("--all", action="store_true", help="every dead letter (needs --yes)")
    pg.add_argument("--yes", action="store_true", help="confirm --all")
    pg.add_argument("--by", help="who is purging (default: user@host)")

    ex = action("export", "write dead letters, whole, as JSON Lines")
    ex.add_argument("--to", required=True, metavar="FILE.jsonl", help="'-' for stdout")
    _filters(ex)
    ex.add_argument("--status", choices=[*STATUSES, "all"], default="all")


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", help="the work queue (or its .dlq)")
    parser.add_argument("--reason", help="e.g. invalid, handler_error, delivery_limit")
    parser.add_argument("--type", dest="message_type", help="message type, e.g. SubmitTask")
    parser.add_argument("--since", help="died since: 30m, 2h, 7d, or an ISO time")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(run_async(args))


async def run_async(args: argparse.Namespace, console: Console | None = None) -> int:
    out = console or Console(soft_wrap=False)
    handler = {
        "list": _list,
        "show": _show,
        "replay": _replay,
        "purge": _purge,
        "export": _export,
    }[args.action]
    try:
        async with _session(args) as session:
            return await handler(args, session, out)
    except (ArchiveError, StoreError) as exc:
        raise UserError(str(exc)) from None


@dataclass
class Session:
    archive: DeadLetterArchive
    store: EventStore
    settings: BrokerSettings
    _conn: BrokerConnection | None = None

    async def broker(self) -> BrokerConnection:
        if self._conn is None:
            self._conn = await BrokerConnection(self.settings, role="rally-dlq").connect()
        return self._conn

    def directory(self, conn: BrokerConnection) -> DlqDirectory:
        agents = store_agent_ids(self.store)
        return DlqDirectory.from_env(conn.topology, agents=agents, archive=self.archive)

    async def drain(self) -> int:
        conn = await self.broker()
        mover = DeadLetterMover(conn, self.archive, directory=self.directory(conn))
        return await mover.drain()


@asynccontextmanager
async def _session(args: argparse.Namespace) -> AsyncIterator[Session]:
    url = args.store or default_store_url()
    archive = open_archive(url)
    store = open_store(url)
    await archive.start()
    try:
        await store.start()
        session = Session(archive, store, BrokerSettings.from_env())
        try:
            yield session
        finally:
            if session._conn is not None:
                await session._conn.close()
            await store.close()
    finally:
        await archive.close()


def _query(args: argparse.Namespace, *, statuses: tuple[Status, ...] = ("dead",)) -> Query:
    since = None
    if getattr(args, "since", None):
        try:
            since = parse_since(args.since, SystemClock().now())
        except ValueError as exc:
            raise UserError(str(exc)) from None
    status = getattr(args, "status", None)
    if status:
        statuses = STATUSES if status == "all" else (status,)
    return Query(
        queue=getattr(args, "queue", None),
        reason=getattr(args, "reason", None),
        message_type=getattr(args, "message_type", None),
        since=since,
        statuses=statuses,
        limit=getattr(args, "limit", None),
    )


async def _drain_or_warn(session: Session) -> None:
    try:
        await session.drain()
    except BrokerUnavailable as exc:
        print(f"rally: not draining the dead-letter queues first: {exc}", file=sys.stderr)


async def _list(args: argparse.Namespace, session: Session, out: Console) -> int:
    if not args.no_drain:
        await _drain_or_warn(session)
    rows = await session.archive.find(_query(args))
    if args.json:
        _print_json(out, [summary_json(s) for s in rows])
    else:
        render.list_table(rows, out)
    return 0


async def _show(args: argparse.Namespace, session: Session, out: Console) -> int:
    try:
        letter = await session.archive.get(args.id)
    except NotFound as exc:
        raise UserError(f"{exc} (`rally dlq list` shows the ids)") from None
    if args.json:
        _print_json(out, letter_json(letter))
    else:
        render.show(letter, out)
    return 0


async def _replay(args: argparse.Namespace, session: Session, out: Console) -> int:
    modes = sum((bool(args.ids), args.all, bool(args.filter)))
    if modes != 1:
        raise UserError("replay needs exactly one of: IDs, --all, --filter KEY=VALUE")
    if args.edit and len(args.ids) != 1:
        raise UserError("--edit replays exactly one dead letter: give its ID")
    edited = _read_edit(args.edit) if args.edit else None
    rate = _rate(args.rate)
    if not args.ids:
        await _drain_or_warn(session)
    letters = await _select(args, session)
    conn = await session.broker()
    publisher = Publisher(conn, sender="rally-dlq")
    replayer = Replayer(
        session.archive,
        publisher,
        conn.topology,
        history=StoreHistory(session.store),
        by=operator(args.by),
        max_bytes=session.settings.max_message_bytes,
    )
    report = await replayer.replay(
        letters, edited_body=edited, dry_run=args.dry_run, rate=rate, to_origin=args.to_origin
    )
    if args.json:
        results = [_result(r) for r in report.results]
        _print_json(out, {"replay_id": report.replay_id, "results": results})
    else:
        render.replay_report(report, out)
    return 0 if report.ok else 1


def _print_json(out: Console, value: Any) -> None:
    # plain text, not rich: rich would wrap long lines at the terminal's width
    out.file.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")
    out.file.flush()


def _result(r: Result) -> dict[str, Any]:
    return {k: getattr(r, k) for k in ("id", "outcome", "detail", "exchange", "routing_key")}


async def _select(args: argparse.Namespace, session: Session) -> list[DeadLetter]:
    if args.ids:
        letters = []
        for id_ in dict.fromkeys(args.ids):
            try:
                letters.append(await session.archive.get(id_))
            except NotFound as exc:
                raise UserError(str(exc)) from None
        return letters
    query = Query()
    if args.filter:
        fields: dict[str, str] = {}
        for item in args.filter:
            key, sep, value = item.partition("=")
            if not sep or key not in FILTER_KEYS or not value:
                raise UserError(f"--filter {item!r}: use KEY=VALUE with KEY one of {FILTER_KEYS}")
            fields["message_type" if key == "type" else key] = value
        query = _query(argparse.Namespace(**fields))
    return [x async for x in session.archive.scan(query)]


def _read_edit(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"--edit {path}: {exc.strerror}") from None


def _rate(text: str | None) -> float | None:
    if not text:
        return None
    try:
        rate = float(text.lower().removesuffix("/s"))
    except ValueError:
        raise UserError(f"--rate {text!r}: give messages a second, e.g. 50 or 50/s") from None
    if rate <= 0:
        raise UserError("--rate must be above 0")
    return rate


async def _purge(args: argparse.Namespace, session: Session, out: Console) -> int:
    if bool(args.ids) == bool(args.all):
        raise UserError("purge needs IDs or --all (with --yes), not both")
    if args.all and not args.yes:
        raise UserError("purge --all retires every dead letter: add --yes to confirm")
    if args.all:
        ids = [s.id for s in await session.archive.find(Query())]
    else:
        ids = []
        for id_ in args.ids:
            try:
                ids.append((await session.archive.get(id_)).id)
            except NotFound as exc:
                raise UserError(str(exc)) from None
    history = StoreHistory(session.store)
    done = await purge(session.archive, ids, by=operator(args.by), history=history)
    skipped = len(set(ids)) - len(done)
    note = f" ({skipped} were not dead or are being replayed)" if skipped else ""
    out.print(f"purged {len(done)} dead letter{'s' if len(done) != 1 else ''}{note}")
    return 0


async def _export(args: argparse.Namespace, session: Session, out: Console) -> int:
    query = _query(args, statuses=STATUSES)
    if args.to == "-":
        count = await export_jsonl(session.archive, sys.stdout, query)
    else:
        # a CLI writing its own output file: blocking here holds up nothing else
        with open(args.to, "w", encoding="utf-8") as f:  # noqa: ASYNC230
            count = await export_jsonl(session.archive, f, query)
    print(f"exported {count} dead letters to {args.to}", file=sys.stderr)
    return 0
