"""What the dashboard shows of the fleet, read from the read models: indexed queries only.

The agents and tasks read models (workers/readmodels/) hold the one fold of
each; the dashboard catches their runner up, then asks for what the page shows:
every agent (the fleet, with the tasks each holds now), a count per task state,
the most recently changed tasks, and the tasks that ended since the last look
(for the finish rate). Each answer costs its own size, not the history's age.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from workers.readmodels.agent_rows import AgentRow
from workers.readmodels.agents import agent_table
from workers.readmodels.checkpoint import Health
from workers.readmodels.sql import ReadModelDb
from workers.readmodels.task_queries import COLUMNS, TaskRow, active_by_agent, count_by_state
from workers.readmodels.tasks import TABLE as TASKS
from workers.tasks.state import TERMINAL

RECENT_TASKS = 200
# the page's "recently changed" list and the finish rate read the rows a page of records
# touched last: an index of the tasks read model's own, created here if it is missing
SCHEMA = (f"CREATE INDEX IF NOT EXISTS {TASKS}_changed ON {TASKS} (updated_position)",)
# at start, how far back to look for tasks that ended within the chart's window
ENDED_LOOKBACK_ROWS = 5000


@dataclass(frozen=True, slots=True)
class AgentLine:
    """An agent as the agents read model has it, with the tasks it holds now."""

    row: AgentRow
    load: int = 0

    @property
    def agent_id(self) -> str:
        return self.row.agent.agent_id

    @property
    def status(self) -> str:
        return self.row.agent.status


@dataclass(frozen=True, slots=True)
class FleetView:
    """One refresh's answers. ``position``: the history they are current to."""

    position: int = 0
    agents: tuple[AgentLine, ...] = ()
    by_state: dict[str, int] = field(default_factory=dict)
    recent: tuple[TaskRow, ...] = ()
    health: tuple[Health, ...] = ()

    @property
    def open(self) -> int:
        return sum(n for state, n in self.by_state.items() if state not in TERMINAL)

    @property
    def stopped(self) -> list[Health]:
        return [h for h in self.health if h.stopped]


async def read_view(
    db: ReadModelDb, position: int, health: Sequence[Health], *, recent: int = RECENT_TASKS
) -> FleetView:
    load = await active_by_agent(db)
    agents = tuple(AgentLine(row, load.get(row.agent.agent_id, 0)) for row in await agent_table(db))
    return FleetView(
        position=position,
        agents=agents,
        by_state=await count_by_state(db),
        recent=tuple(await recent_tasks(db, recent)),
        health=tuple(health),
    )


async def recent_tasks(db: ReadModelDb, limit: int) -> list[TaskRow]:
    """The tasks whose rows changed last (the newest record first)."""
    rows = await db.fetch(
        f"SELECT {COLUMNS} FROM {TASKS} ORDER BY updated_position DESC LIMIT ?", (limit,)
    )
    return [_task(r) for r in rows]


def _task(r: Sequence[object]) -> TaskRow:
    """A row selected with the tasks read model's ``COLUMNS``, in order."""
    priority, attempt, position = r[3], r[4], r[11]
    return TaskRow(
        task_id=str(r[0]),
        state=str(r[1]),
        capability=None if r[2] is None else str(r[2]),
        priority=None if priority is None else int(str(priority)),
        attempt=int(str(attempt)),
        agent_id=None if r[5] is None else str(r[5]),
        owner=None if r[6] is None else str(r[6]),
        submitted_at=str(r[7]),
        started_at=None if r[8] is None else str(r[8]),
        ended_at=None if r[9] is None else str(r[9]),
        error=None if r[10] is None else str(r[10]),
        updated_position=int(str(position)),
        expired=bool(r[12]),
    )


@dataclass
class EndedSince:
    """Finds the tasks that ended since the last look, for the finish rate.

    Only rows changed since the last look are read (``updated_position`` above
    it). A row changed again after its task ended (a late record of the same
    stream) is not counted twice: only ends after the latest end already
    counted are new.
    """

    after_position: int | None = None
    latest_end: str = ""

    async def __call__(self, db: ReadModelDb, position: int) -> list[datetime]:
        if self.after_position is None:
            rows = await db.fetch(
                f"SELECT ended_at FROM {TASKS} WHERE ended_at IS NOT NULL"
                " ORDER BY updated_position DESC LIMIT ?",
                (ENDED_LOOKBACK_ROWS,),
            )
        else:
            rows = await db.fetch(
                f"SELECT ended_at FROM {TASKS} WHERE updated_position > ? AND ended_at IS NOT NULL",
                (self.after_position,),
            )
        self.after_position = position
        ends = sorted(str(r[0]) for r in rows if str(r[0]) > self.latest_end)
        if ends:
            self.latest_end = ends[-1]
        return [datetime.fromisoformat(e) for e in ends]
