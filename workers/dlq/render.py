"""Dead letters for people: tables, one dead letter in full, a replay's outcome (rich)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from workers.dlq.explain import explain
from workers.dlq.model import DeadLetter, DeadLetterSummary
from workers.dlq.replay import ReplayReport
from workers.dlq.views import body_json, payload_of


def _when(s: DeadLetterSummary | DeadLetter) -> str:
    return s.last_death_at.strftime("%Y-%m-%d %H:%M:%S")


def list_table(rows: Sequence[DeadLetterSummary], console: Console) -> None:
    """One line each, newest first, then the counts by reason.

    Plain aligned text, not a rich Table: rich lays out 10,000 rows in seconds,
    this in milliseconds, and the lines stay grep- and awk-friendly.
    """
    if not rows:
        console.print("no dead letters match")
        return
    header = ("ID", "DIED (UTC)", "QUEUE", "REASON", "TYPE", "TRIES")
    cells = [
        (s.id, _when(s), s.queue, s.reason, s.message_type or "-", str(s.attempts)) for s in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    room = max(20, console.width - sum(widths) - 2 * len(widths))
    out = console.file
    out.write("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  ERROR\n")
    for s, row in zip(rows, cells, strict=True):
        error = (s.error or "").split("\n", 1)[0]
        error = error if len(error) <= room else error[: room - 1] + "…"
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + f"  {error}\n")
    counts = Counter(s.reason for s in rows)
    tally = ", ".join(f"{reason} {n}" for reason, n in counts.most_common())
    out.write(f"\n{len(rows)} dead letter{'s' if len(rows) != 1 else ''}: {tally}\n")
    out.flush()


def show(letter: DeadLetter, console: Console) -> None:
    why = explain(letter)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    origin = f"{letter.exchange or '?'} / {letter.routing_key or '?'}"
    for label, value in (
        ("id", letter.id),
        ("status", _status(letter)),
        ("reason", f"{letter.reason} (dead-lettered by {letter.dead_lettered_by})"),
        ("queue", f"{letter.queue}  (from {letter.dlq})"),
        ("going to", origin),
        ("type", letter.message_type or "-"),
        ("message id", letter.message_id or "-"),
        ("correlation", letter.correlation_id or "-"),
        ("sender", letter.user_id or "-"),
        ("attempts", str(letter.attempts)),
        ("first death", letter.first_death_at.isoformat()),
        ("last death", letter.last_death_at.isoformat()),
        ("archived", letter.archived_at.isoformat()),
        ("worker", f"{letter.worker or '-'} / replica {letter.replica or '-'}"),
    ):
        facts.add_row(label, Text(value))
    if letter.replay_of:
        facts.add_row("replay of", letter.replay_of)
    explanation = Text(why.summary[:1].upper() + why.summary[1:] + ".", style="bold red")
    parts: list[Text] = [explanation]
    parts += [Text(f"  {line}") for line in why.details]
    parts.append(Text(f"What to do: {why.hint}.", style="italic"))
    if letter.error and letter.error not in why.summary:
        parts.append(Text(f"Error: {letter.error}", style="dim"))
    console.print(Panel(Group(*parts), title="why it died", title_align="left"))
    console.print(facts)
    for r in letter.replays:
        edited = ", edited" if r.edited else ""
        console.print(
            f"replayed {r.at.isoformat()} by {r.by} to {r.exchange} / {r.routing_key}{edited} "
            f"(replay {r.replay_id})"
        )
    console.print(Panel(_payload(letter.body), title="payload", title_align="left"))
    headers = json.dumps(letter.headers, indent=2, ensure_ascii=False, default=str)
    props = json.dumps(letter.properties, indent=2, ensure_ascii=False, default=str)
    console.print(
        Panel(Syntax(headers, "json", word_wrap=True), title="headers", title_align="left")
    )
    console.print(
        Panel(Syntax(props, "json", word_wrap=True), title="properties", title_align="left")
    )


def _status(letter: DeadLetter) -> str:
    if letter.status == "dead":
        return "dead"
    when = letter.status_at.isoformat() if letter.status_at else "?"
    return f"{letter.status} at {when} by {letter.status_by or '?'}"


def _payload(body: bytes) -> Syntax | Text:
    parsed = payload_of(body)
    if parsed is not None:
        pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
        return Syntax(pretty, "json", word_wrap=True)
    encoding, text = body_json(body)
    note = "not JSON" if encoding == "utf-8" else "not UTF-8; base64"
    return Text(f"({note}, {len(body)} bytes)\n{text[:4000]}")


def replay_report(report: ReplayReport, console: Console) -> None:
    verb = "would replay" if report.dry_run else "replay"
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("ID", "OUTCOME", "TO", "DETAIL"):
        table.add_column(name, overflow="fold")
    for r in report.results:
        to = f"{r.exchange} / {r.routing_key}" if r.exchange else ""
        table.add_row(r.id, r.outcome, to, r.detail)
    if report.results:
        console.print(table)
    outcomes = Counter(r.outcome for r in report.results)
    tally = ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items())) or "nothing to do"
    console.print(f"{verb} {report.replay_id}: {tally}")
