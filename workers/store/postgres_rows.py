"""One append's rows as JSON documents, unpacked by ``json_to_recordset`` in the server.

Why not arrays: asyncpg encodes array parameters element by element in Python,
which cost more than the database work for batches of hundreds of events. Here
the client builds one string per table (event data and metadata are already
JSON text from the planner and go in verbatim) and PostgreSQL parses it in C.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from workers.store.codec import dumps, utc
from workers.store.common import RelayHook
from workers.store.planner import BatchPlan, EventRow

# Every statement of one WITH sees the table as it was before it: ``cx`` deletes only the
# timers already stored, never one this very append inserts. It returns their ids.
WRITE_SQL = """
WITH cx AS (
    DELETE FROM outbox WHERE timer_of = ANY($5::text[]) RETURNING id
), ev AS (
    INSERT INTO events (position, stream, version, id, type, schema_version, data, metadata,
                        recorded_at)
    SELECT p, s, v, i, t, sv, d, m, $4
      FROM json_to_recordset($1::json)
           AS x(p bigint, s text, v int, i uuid, t text, sv int, d jsonb, m jsonb)
), ob AS (
    INSERT INTO outbox (id, stream, event_position, exchange, routing_key, body, message_id,
                        headers, timer_of, available_at, claimed_by)
    SELECT i, s, ep, x, rk, decode(b, 'base64'), mid, h, t, av, cb
      FROM json_to_recordset($2::json)
           AS x(i bigint, s text, ep bigint, x text, rk text, b text, mid text, h jsonb,
                t text, av timestamptz, cb text)
), pm AS (
    INSERT INTO processed_messages (key, result, recorded_at)
    SELECT k, r, $4 FROM json_to_recordset($3::json) AS x(k text, r jsonb)
)
SELECT ARRAY(SELECT id FROM cx ORDER BY id)
"""


def events_json(events: Sequence[EventRow]) -> str:
    q = json.dumps
    return (
        "["
        + ",".join(
            f'{{"p":{e.position},"s":{q(e.stream)},"v":{e.version},"i":"{e.id}",'
            f'"t":{q(e.type)},"sv":{e.schema_version},"d":{e.data},"m":{e.metadata}}}'
            for e in events
        )
        + "]"
    )


def outbox_json(
    plan: BatchPlan,
    first_id: int,
    now: datetime,
    hook: RelayHook | None,
    held: Collection[str] = (),
) -> tuple[str, list[int]]:
    """The outbox rows, and the ids of those born claimed by the local relay.

    Rows of a ``held`` stream (an earlier row of it is pending) are not: the sweeper
    publishes them after that row, in order."""
    rows = []
    claimed: list[int] = []
    claim_until = (now + timedelta(seconds=hook.claim_seconds)) if hook else now
    for offset, spec in enumerate(plan.outbox):
        row_id = first_id + offset
        m = spec.message
        due = utc(m.not_before) if m is not None and m.not_before is not None else None
        if due is not None and due > now:  # a timer: the sweeper sends it when due
            available, owner = due, None
        elif hook is not None and spec.stream not in held:  # the local relay's fast path
            available, owner = claim_until, hook.owner
            claimed.append(row_id)
        else:
            available, owner = now, None
        row: dict[str, object] = {
            "i": row_id,
            "s": spec.stream,
            "ep": spec.event_position,
            "av": available.isoformat(),
            "cb": owner,
        }
        if m is not None:
            row["x"] = m.exchange
            row["rk"] = m.routing_key
            row["b"] = base64.b64encode(bytes(m.body)).decode("ascii")
            row["mid"] = m.message_id
            row["h"] = json.loads(dumps(dict(m.headers), "outbox headers"))
            row["t"] = m.timer_of
        rows.append(row)
    return json.dumps(rows, separators=(",", ":")), claimed


def processed_json(plan: BatchPlan) -> str:
    return json.dumps([{"k": key, "r": json.loads(result)} for key, result in plan.processed])
