"""Dead letters as JSON (for `--json`, export and dashboards), and the few reads built on them.

The JSON shapes are an interface: `rally dlq list --json` objects always have
``id, reason, queue, type, attempts, first_death_at, last_death_at``; export
lines are full records whose ``body`` is text when it is UTF-8, else base64.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TextIO

from workers.dlq.archive import DeadLetterArchive
from workers.dlq.explain import explain
from workers.dlq.model import DeadLetter, DeadLetterSummary, Query, utc


async def dead_letter_counts(archive: DeadLetterArchive) -> dict[tuple[str, str], int]:
    """Dead letters waiting for an operator, by (queue, reason): for `rally status`."""
    return await archive.counts(("dead",))


def summary_json(s: DeadLetterSummary) -> dict[str, Any]:
    return {
        "id": s.id,
        "reason": s.reason,
        "queue": s.queue,
        "type": s.message_type,
        "message_id": s.message_id,
        "attempts": s.attempts,
        "first_death_at": s.first_death_at.isoformat(),
        "last_death_at": s.last_death_at.isoformat(),
        "status": s.status,
        "error": s.error,
    }


def body_json(body: bytes) -> tuple[str, str]:
    """(encoding, text): ``utf-8`` text as is, anything else base64."""
    try:
        return "utf-8", body.decode()
    except UnicodeDecodeError:
        return "base64", base64.b64encode(body).decode()


def payload_of(body: bytes) -> Any | None:
    """The body as JSON, when it is JSON (for pretty-printing), else None."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def letter_json(x: DeadLetter) -> dict[str, Any]:
    encoding, text = body_json(x.body)
    why = explain(x)
    return {
        "id": x.id,
        "reason": x.reason,
        "queue": x.queue,
        "dlq": x.dlq,
        "type": x.message_type,
        "message_id": x.message_id,
        "correlation_id": x.correlation_id,
        "attempts": x.attempts,
        "first_death_at": x.first_death_at.isoformat(),
        "last_death_at": x.last_death_at.isoformat(),
        "archived_at": x.archived_at.isoformat(),
        "status": x.status,
        "status_at": x.status_at.isoformat() if x.status_at else None,
        "status_by": x.status_by,
        "dead_lettered_by": x.dead_lettered_by,
        "explanation": {"summary": why.summary, "details": list(why.details), "hint": why.hint},
        "error": x.error,
        "error_type": x.error_type,
        "field_errors": [{"loc": e.loc, "msg": e.msg} for e in x.field_errors],
        "origin": {"exchange": x.exchange, "routing_key": x.routing_key, "queue": x.queue},
        "worker": x.worker,
        "replica": x.replica,
        "user_id": x.user_id,
        "replay_of": x.replay_of,
        "replays": [
            {
                "replay_id": r.replay_id,
                "at": r.at.isoformat(),
                "by": r.by,
                "exchange": r.exchange,
                "routing_key": r.routing_key,
                "edited": r.edited,
            }
            for r in x.replays
        ],
        "properties": x.properties,
        "headers": x.headers,
        "body_encoding": encoding,
        "body": text,
    }


async def export_jsonl(archive: DeadLetterArchive, out: TextIO, query: Query) -> int:
    """Write every matching dead letter, whole, one JSON object a line, oldest first."""
    count = 0
    async for letter in archive.scan(query):
        out.write(json.dumps(letter_json(letter), ensure_ascii=False, default=str) + "\n")
        count += 1
    return count


_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS: Mapping[str, str] = {
    "s": "seconds",
    "m": "minutes",
    "h": "hours",
    "d": "days",
    "w": "weeks",
}


def parse_since(text: str, now: datetime) -> datetime:
    """``30m``, ``2h``, ``7d``, ``1w`` ago, or an ISO 8601 time (UTC if no zone)."""
    match = _AGO.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        return utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration like 30m, 2h, 7d or a time like "
            "2026-11-24T10:00:00Z"
        ) from None
