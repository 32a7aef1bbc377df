"""An agent's read-model row and how a recorded event moves it: pure, no I/O.

The row is the registry's own fold (workers/registry/state.py: ``Agent``,
``evolve``) plus the two times the history gives it: when it first joined and
when its stream last changed. There is no second state machine here: a row is
turned back into an ``Agent``, evolved by the one fold, and written out again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts import Event
from workers.registry.state import STATUSES, Agent, evolve

# the columns, in the order ``values`` gives them
COLUMNS = (
    "agent_id",
    "status",
    "capabilities",
    "capacity",
    "labels",
    "software_version",
    "heartbeat_interval_s",
    "version",
    "joined_at",
    "updated_at",
)


@dataclass(frozen=True, slots=True)
class AgentRow:
    agent: Agent
    joined_at: datetime  # its stream's first event
    updated_at: datetime  # its stream's latest event (join, update, drain, loss, leave)

    def values(self) -> tuple[Any, ...]:
        a = self.agent
        return (
            a.agent_id,
            a.status,
            json.dumps(list(a.capabilities)),
            a.capacity,
            json.dumps(a.labels, sort_keys=True),
            a.software_version,
            a.heartbeat_interval_s,
            a.version,
            stamp(self.joined_at),
            stamp(self.updated_at),
        )

    def as_json(self, load: int) -> dict[str, Any]:
        """The keys `rally agents --json` has always printed, then the row's times."""
        a = self.agent
        return {
            "agent_id": a.agent_id,
            "status": a.status,
            "capabilities": list(a.capabilities),
            "capacity": a.capacity,
            "load": load,
            "labels": dict(a.labels),
            "software_version": a.software_version,
            "heartbeat_interval_s": a.heartbeat_interval_s,
            "joined_at": self.joined_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def stamp(moment: datetime) -> str:
    """Times as the read models keep them (workers/readmodels/sql.py): fixed-width UTC text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_values(row: Sequence[Any]) -> AgentRow:
    """The inverse of ``AgentRow.values``: a row selected with ``COLUMNS`` in order."""
    get = dict(zip(COLUMNS, row, strict=True)).__getitem__
    status = str(get("status"))
    if status not in (*STATUSES, "new"):
        raise ValueError(f"agents read model: unknown status {status!r}")
    agent = Agent(
        agent_id=str(get("agent_id")),
        status=status,
        capabilities=tuple(json.loads(get("capabilities"))),
        capacity=int(get("capacity")),
        labels=dict(json.loads(get("labels"))),
        software_version=str(get("software_version")),
        heartbeat_interval_s=float(get("heartbeat_interval_s")),
        version=int(get("version")),
    )
    return AgentRow(
        agent,
        datetime.fromisoformat(str(get("joined_at"))),
        datetime.fromisoformat(str(get("updated_at"))),
    )


def advance(row: AgentRow | None, agent_id: str, event: Event, at: datetime) -> AgentRow:
    """The row one recorded event later: the registry's ``evolve``, and the record's time."""
    agent = evolve(row.agent if row else Agent(agent_id), event)
    return AgentRow(agent, row.joined_at if row else at, at)
