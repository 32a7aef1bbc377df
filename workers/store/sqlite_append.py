"""The SQLite append transaction, on the writer's thread: read the state, plan, write.

One synchronous function per append (``append``), run on the writer connection's
thread as one hop: BEGIN IMMEDIATE, the state query, planning, the deletes of
cancelled timers, the inserts, COMMIT; then, outside the write lock, what the commit
hands the local relay and the recorded events.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from workers.store.base import AppendOutcome, AppendRequest, Handoff, Publishes
from workers.store.codec import result_from_dict, utc, utc_now
from workers.store.common import RelayHook
from workers.store.handoff import handed_rows, recorded_outcomes
from workers.store.ordering import split_pending
from workers.store.planner import BatchPlan, OutboxSpec, keys_of, plan_batch, streams_of
from workers.store.sqlite_conn import write_transaction
from workers.store.sqlite_outbox import cancel_timers, message_columns
from workers.store.sqlite_schema import EVENT_COLUMNS

# The state one append needs: last position, last outbox id (AUTOINCREMENT's counter;
# ids are assigned explicitly under the write lock), current versions, applied keys,
# and per stream of ?3 with outbox rows pending: the newest one, and whether one is not
# claimed by the local relay ?4 (see ordering.py: this append's rows of the stream then
# go to the sweeper). Cheap whatever the backlog: max(id) is one probe of the (stream, id)
# index, and the EXISTS stops at the first row that is not the relay's own in flight.
_STATE_SQL = """
SELECT (SELECT coalesce(max(position), 0) FROM events),
       coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),
       (SELECT json_group_object(s.value, (SELECT max(version) FROM events WHERE stream = s.value))
          FROM json_each(?1) AS s),
       (SELECT json_group_object(key, json(result)) FROM processed_messages
         WHERE key IN (SELECT value FROM json_each(?2))),
       (SELECT json_group_object(s.value, json_array(
                 (SELECT max(id) FROM outbox WHERE stream = s.value),
                 EXISTS (SELECT 1 FROM outbox WHERE stream = s.value AND claimed_by IS NOT ?4)))
          FROM json_each(?3) AS s WHERE EXISTS (SELECT 1 FROM outbox WHERE stream = s.value))
"""


@dataclass(slots=True)
class _Written:
    """What the append transaction wrote, for what is built after its COMMIT."""

    plan: BatchPlan
    now: datetime
    claimed_at: float
    claimed: list[tuple[int, OutboxSpec]] = field(default_factory=list)
    after: dict[str, int] = field(default_factory=dict)
    cancelled: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Appended:
    outcomes: list[AppendOutcome]
    handoff: Handoff | None


def append(
    requests: Sequence[AppendRequest],
    hook: RelayHook | None,
    publishes: Publishes | None,
    db: sqlite3.Connection,
) -> Appended:
    """A whole append, on the writer's thread: the transaction, then (after COMMIT, outside
    the write lock, still in the same hop) the recorded events and the relay's rows."""
    written = write_transaction(partial(_write_batch, requests, hook, publishes), db)
    handoff = None
    if hook is not None and (written.claimed or written.cancelled):
        rows = handed_rows(written.plan, written.claimed, written.now)
        handoff = Handoff(rows, written.claimed_at, written.after, written.cancelled)
    return Appended(recorded_outcomes(written.plan, written.now), handoff)


def _write_batch(
    requests: Sequence[AppendRequest],
    hook: RelayHook | None,
    publishes: Publishes | None,
    db: sqlite3.Connection,
) -> _Written:
    """Inside the write transaction: read the state, plan, insert."""
    streams = json.dumps(streams_of(requests))
    # Everything the planner needs in one statement.
    last, seq, versions, processed, pending = db.execute(
        _STATE_SQL,
        (
            streams,
            json.dumps(keys_of(requests)),
            streams if hook else "[]",
            hook.owner if hook else None,
        ),
    ).fetchone()
    plan = plan_batch(
        requests,
        {s: int(v or 0) for s, v in json.loads(versions).items()},
        {k: result_from_dict(r) for k, r in json.loads(processed).items()},
        int(last),
        publishes,
    )
    # before this batch's rows go in: a request's cancel never hits its own new timers
    cancelled = cancel_timers(db, sorted(plan.cancel))
    # Taken before the claims' start (now): the relay's deadlines count from here.
    claimed_at = time.monotonic()
    now = utc_now()
    held, after = split_pending(json.loads(pending))
    claimed = _write_plan(db, plan, hook, int(seq), now, held)
    return _Written(plan, now, claimed_at, claimed, after, cancelled)


def _write_plan(
    db: sqlite3.Connection,
    plan: BatchPlan,
    hook: RelayHook | None,
    seq: int,
    now: datetime,
    held: set[str],
) -> list[tuple[int, OutboxSpec]]:
    """Insert the planned rows; return those the local relay will publish (id, spec).

    ``held``: streams with a pending outbox row not the relay's: theirs go to the sweeper.
    """
    stamp = now.isoformat(timespec="microseconds")
    if plan.events:
        db.executemany(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.position,
                    e.stream,
                    e.version,
                    str(e.id),
                    e.type,
                    e.schema_version,
                    e.data,
                    e.metadata,
                    stamp,
                )
                for e in plan.events
            ],
        )
    claimed: list[tuple[int, OutboxSpec]] = []
    if plan.outbox:
        epoch = now.timestamp()
        rows = []
        for offset, spec in enumerate(plan.outbox, start=1):
            row_id = int(seq) + offset
            message = spec.message
            due = utc(message.not_before).timestamp() if message and message.not_before else 0
            if due > epoch:  # a timer: the sweeper publishes it when due
                available, owner = due, None
            elif hook is not None and spec.stream not in held:
                # born claimed by the local relay's fast path
                available, owner = epoch + hook.claim_seconds, hook.owner
                claimed.append((row_id, spec))
            else:
                available, owner = epoch, None
            columns = message_columns(message)
            rows.append((row_id, spec.stream, spec.event_position, *columns, available, owner))
        db.executemany(
            "INSERT INTO outbox (id, stream, event_position, exchange, routing_key, body,"
            " message_id, headers, timer_of, available_at, claimed_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    if plan.processed:
        db.executemany(
            "INSERT INTO processed_messages (key, result, recorded_at) VALUES (?, ?, ?)",
            [(key, result, stamp) for key, result in plan.processed],
        )
    return claimed
