"""The agents read model: one row per agent, derived from the registry's one fold.

Each record of an ``agent-*`` stream is decoded and applied with
``workers.registry.state.evolve`` to the agent as it stood just before it
(workers/readmodels/agent_rows.py turns a row back into an ``Agent`` and out
again), so an agent's status here is the one the registry decides on.

Load (the tasks an agent holds: assigned or running) is not kept here. It is
counted at answer time from the tasks read model (``active_by_agent``: the
``state`` index, so the cost follows the tasks running now), which the task
fold already keeps; a counter here would be a second reading of the task
lifecycle, one that could drift from it.

The agent before a record comes from memory (every agent the projection has
seen: the fleet, not the history), checked against the record's stream
version; on a miss, from its row, else from its stream folded up to there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts import ContractError, Event
from workers.readmodels.agent_rows import COLUMNS, AgentRow, advance, from_values
from workers.readmodels.runner import Projection, ProjectionRunner, Tx, Unreadable
from workers.readmodels.sql import ReadModelDb
from workers.readmodels.task_queries import active_by_agent
from workers.readmodels.tasks import TasksProjection
from workers.registry.state import STREAM_PREFIX, agent_of
from workers.runtime.messages import load_event
from workers.store.base import EventStore, RecordedEvent

NAME = "agents"
TABLE = "readmodel_agents"

SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        agent_id             TEXT PRIMARY KEY,
        status               TEXT NOT NULL,
        capabilities         TEXT NOT NULL,
        capacity             BIGINT NOT NULL,
        labels               TEXT NOT NULL,
        software_version     TEXT NOT NULL,
        heartbeat_interval_s DOUBLE PRECISION NOT NULL,
        version              BIGINT NOT NULL,
        joined_at            TEXT NOT NULL,
        updated_at           TEXT NOT NULL
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {TABLE}_status ON {TABLE} (status, agent_id)",
)

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"
# a row never moves back: a page applied again after a lost race changes nothing
UPSERT = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
    " ON CONFLICT (agent_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    + f" WHERE excluded.version > {TABLE}.version"
)


class AgentsProjection:
    """The ``agents`` projection (see the module docs)."""

    name = NAME
    schema = SCHEMA
    streams: str | None = STREAM_PREFIX

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._known: dict[str, AgentRow] = {}

    async def apply(self, tx: Tx, records: Sequence[RecordedEvent]) -> None:
        changed: dict[str, AgentRow] = {}
        for record in records:
            agent_id = agent_of(record.stream)
            if agent_id is None:
                continue
            row = changed.get(agent_id) or await self._before(tx, agent_id, record)
            if row is not None and row.agent.version >= record.version:
                continue  # applied already
            changed[agent_id] = advance(row, agent_id, _decoded(record), record.recorded_at)
        for agent_id, row in changed.items():
            tx.execute(UPSERT, row.values())
            self._known[agent_id] = row

    async def _before(self, tx: Tx, agent_id: str, record: RecordedEvent) -> AgentRow | None:
        """The agent's row just before ``record`` (or at or past it, if applied already)."""
        known = self._known.get(agent_id)
        # memory only when exactly in step: it may be ahead of a commit that failed
        if known is not None and known.agent.version == record.version - 1:
            return known
        rows = await tx.fetch(f"{_SELECT} WHERE agent_id = ?", (agent_id,))
        row = from_values(rows[0]) if rows else None
        if row is not None and row.agent.version >= record.version - 1:
            return row
        if record.version == 1:
            return None
        # out of step (a record another runner has not committed the row of yet): the stream
        row = None
        for earlier in await self.store.read(record.stream):
            if earlier.version >= record.version:
                break
            row = advance(row, agent_id, _decoded(earlier), earlier.recorded_at)
        if row is None or row.agent.version != record.version - 1:
            raise Unreadable(record, "its stream's earlier events are no longer in the store")
        return row


def _decoded(record: RecordedEvent) -> Event:
    try:
        return load_event(record)
    except (ContractError, TypeError) as exc:
        raise Unreadable(record, str(exc)) from None


# ---- the questions it answers ----
async def fleet_runner(
    store: EventStore, *, db: ReadModelDb | None = None, page: int = 5000
) -> ProjectionRunner:
    """A runner of the tasks and agents projections, caught up to the store's last position
    (load is counted from the tasks read model, so both must be current). ``db``: the
    store's own database unless given (a test wrapping the store to count its reads)."""
    projections: list[Projection] = [TasksProjection(store), AgentsProjection(store)]
    runner = ProjectionRunner(store, projections, db=db, page=page)
    await runner.catch_up()
    return runner


async def agents_runner(
    store: EventStore, *, db: ReadModelDb | None = None, page: int = 5000
) -> ProjectionRunner:
    """A runner of the agents projection alone, caught up (for readers that need no load)."""
    runner = ProjectionRunner(store, [AgentsProjection(store)], db=db, page=page)
    await runner.catch_up()
    return runner


async def agent_table(db: ReadModelDb) -> list[AgentRow]:
    """Every agent the history has heard of, by id."""
    return [from_values(r) for r in await db.fetch(f"{_SELECT} ORDER BY agent_id")]


async def agent_ids(db: ReadModelDb) -> list[str]:
    return [str(r[0]) for r in await db.fetch(f"SELECT agent_id FROM {TABLE} ORDER BY agent_id")]


async def agent_list(db: ReadModelDb) -> list[dict[str, Any]]:
    """What `rally agents --json` prints: each agent with the tasks it holds now."""
    load = await active_by_agent(db)
    return [row.as_json(load.get(row.agent.agent_id, 0)) for row in await agent_table(db)]
