"""What replaying one dead letter would do: validate the (edited) body, pick the target,
build the headers. Pure — the Replayer (replay.py) does the I/O around it.

Where to: by default the queue it died in, and only that queue — through the
requeue exchange, which every work queue is bound to (``*.<queue>``). Sending
it to its original exchange instead (``to_origin``) would hand an event again
to every subscriber that already handled it; for commands the two are the same.
The replayed message keeps its original headers (and so its sender's identity),
minus the marks of its death, plus ``x-rally-replay-of``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from broker import headers as h
from broker.deadletter import ORIGINAL_USER_ID
from broker.topology import Topology
from contracts import ContractError, decode
from contracts.headers import REPLAY_ID, REPLAY_OF, REPLAYED_BY
from workers.dlq.model import DeadLetter

# headers that describe a death or a retry in progress: a replay starts afresh
_DEATH_HEADERS = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-delivery-count",
        h.DUE_AT,
        h.LAST_ERROR,
        h.ATTEMPT,
        h.DL_REASON,
        h.DL_ERROR,
        h.DL_ERROR_TYPE,
        h.DL_ERRORS,
        h.DL_QUEUE,
        h.DL_ATTEMPTS,
        h.DL_LAST_DEATH,
        h.DL_WORKER,
        h.DL_REPLICA,
        h.DL_TYPE,
        REPLAY_OF,
        REPLAY_ID,
        REPLAYED_BY,
    }
)  # kept: x-rally-original-exchange/-routing-key and first-death-at, so a second death
#     still says where it was first going and when it first died


@dataclass(frozen=True, slots=True)
class Plan:
    """What replaying one letter would do."""

    letter: DeadLetter
    body: bytes
    edited: bool
    exchange: str
    routing_key: str
    refusal: tuple[str, str] | None = None  # (reason, detail) when it may not be published
    message_id: str = ""
    message_type: str | None = None
    correlation_id: str | None = None

    @property
    def same_message(self) -> tuple[str, str, str]:
        return (self.letter.queue, self.letter.message_key, hashlib.sha256(self.body).hexdigest())


def plan(
    letter: DeadLetter,
    topology: Topology,
    *,
    edited_body: bytes | None = None,
    max_bytes: int,
    to_origin: bool = False,
) -> Plan:
    """Pure: validate the (edited) body and pick the target."""
    body = letter.body if edited_body is None else edited_body
    if to_origin:
        exchange, routing_key = letter.exchange or "", letter.routing_key or ""
    else:
        exchange, routing_key = topology.requeue, f"replay.{letter.queue}"
    base = Plan(letter, body, edited_body is not None, exchange, routing_key)
    if to_origin and not letter.exchange:
        return _refused(base, "no_origin", "where it was going is not known; replay to its queue")
    try:
        envelope = decode(body, max_bytes=max_bytes)
    except ContractError as exc:
        return _refused(base, exc.reason, exc.detail)
    return Plan(
        letter,
        body,
        base.edited,
        exchange,
        routing_key,
        message_id=str(envelope.id),
        message_type=envelope.type,
        correlation_id=str(envelope.correlation_id),
    )


def _refused(base: Plan, reason: str, detail: str) -> Plan:
    return Plan(
        base.letter, base.body, base.edited, base.exchange, base.routing_key, (reason, detail)
    )


def replay_headers(letter: DeadLetter, replay_id: str, by: str) -> dict[str, Any]:
    out = {k: v for k, v in letter.headers.items() if k not in _DEATH_HEADERS}
    out.update({REPLAY_OF: letter.id, REPLAY_ID: replay_id, REPLAYED_BY: by})
    # the replay acts as whoever first sent it — never with the replaying operator's rights,
    # and a letter the broker dead-lettered itself (no header of ours) stays as anonymous
    out.setdefault(ORIGINAL_USER_ID, letter.user_id or "")
    return out
