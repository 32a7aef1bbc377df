"""What the archive keeps about a dead letter, and how it is asked for.

A dead letter is kept whole — body, every header, the AMQP properties — plus
the facts pulled out of them so they can be indexed and explained: where it
was going, why it died, how often it was tried, when, and by which replica.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["dead", "replayed", "purged"]
STATUSES: tuple[Status, ...] = ("dead", "replayed", "purged")
# who put it in the dead-letter queue: our consumer runtime, or RabbitMQ itself
DeadLetteredBy = Literal["rallypoint", "rabbitmq"]

Json = Any  # a JSON-safe value (headers and properties are converted on the way in)


def utc(moment: datetime) -> datetime:
    """Aware UTC; a naive time is taken to be UTC already (as RabbitMQ's are)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def letter_id(dlq: str, message_key: str, last_death_at: datetime) -> str:
    """A short id derived from the dedupe key, so the same death always gets the same id.

    12 hex digits: short enough to type, and the chance that two of a million
    dead letters share one is about 2 in 1,000,000 (the unique index on the key
    itself is what guarantees no double-count).
    """
    stamp = utc(last_death_at).isoformat(timespec="microseconds")
    digest = hashlib.sha256(f"{dlq}\0{message_key}\0{stamp}".encode()).hexdigest()
    return digest[:12]


def message_key(message_id: str | None, body: bytes) -> str:
    """The message's identity for dedupe: its id, or for id-less junk, its body's hash."""
    if message_id:
        return message_id
    return "sha256:" + hashlib.sha256(body).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class FieldError:
    loc: str
    msg: str


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """One confirmed replay of a dead letter."""

    replay_id: str
    at: datetime
    by: str
    exchange: str
    routing_key: str
    edited: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    dlq: str  # the dead-letter queue it was moved from
    queue: str  # the work queue it died in
    message_key: str
    message_id: str | None
    message_type: str | None
    reason: str
    dead_lettered_by: DeadLetteredBy
    error: str | None
    error_type: str | None
    field_errors: tuple[FieldError, ...]
    exchange: str | None  # where it was going when it first arrived
    routing_key: str | None
    attempts: int
    first_death_at: datetime
    last_death_at: datetime
    worker: str | None
    replica: str | None
    correlation_id: str | None
    user_id: str | None  # the broker-validated publisher of the original
    body: bytes
    headers: dict[str, Json]
    properties: dict[str, Json]
    archived_at: datetime
    status: Status = "dead"
    status_at: datetime | None = None
    status_by: str | None = None
    replay_of: str | None = None  # a dead letter that died again after a replay of this id
    replays: tuple[ReplayRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetterSummary:
    """One line of `rally dlq list`: no body, no headers, so 10,000 of them load fast."""

    id: str
    queue: str
    reason: str
    message_type: str | None
    message_id: str | None
    attempts: int
    first_death_at: datetime
    last_death_at: datetime
    status: Status
    error: str | None


@dataclass(frozen=True, slots=True)
class Query:
    """What to list, replay or export. Empty fields match everything."""

    queue: str | None = None  # the work queue or its DLQ name
    reason: str | None = None
    message_type: str | None = None
    since: datetime | None = None  # last death at or after
    statuses: tuple[Status, ...] = ("dead",)
    limit: int | None = None
    oldest_first: bool = False
