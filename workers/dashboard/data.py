"""The dashboard's JSON views, built from what is in memory: no I/O here.

These shapes are the scriptable API (``/api/overview`` and friends) as much as
the page's input, so they change only by adding keys. Times are ISO 8601 UTC;
ages are computed here, against the server's clock, so a browser with a wrong
clock still shows the right "3 s ago".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.inspect import QueueStats
from broker.topology import Topology
from workers.dashboard.fleet import AgentLine, FleetView
from workers.dashboard.heartbeats import Beat, HeartbeatBook
from workers.dashboard.throughput import Throughput
from workers.dlq.model import DeadLetterSummary
from workers.readmodels.task_queries import TaskRow

# the order the page lists task states in (the lifecycle's order)
TASK_STATES = ("pending", "assigned", "running", "failed", "succeeded", "cancelled", "dead")
RATE_OVER_S = 10
RECENT_ON_PAGE = 25  # the page's list; /api/tasks gives up to 500 a page


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The latest queue stats, or why there are none."""

    as_of: datetime | None = None
    stats: tuple[QueueStats, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterSnapshot:
    """The archive's waiting dead letters: counts by (queue, reason) and the newest few."""

    as_of: datetime | None = None
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    recent: tuple[DeadLetterSummary, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StoreState:
    url: str
    position: int
    behind: bool  # more history is waiting than one refresh reads
    error: str | None = None


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# ---- queues ----
def queue_kind(topology: Topology, name: str) -> str:
    if name.endswith(".dlq") or name == topology.shared_dlq:
        return "dlq"
    if name.startswith(f"{topology.namespace}.inbox."):
        return "inbox"
    return "worker"


def queues_json(topology: Topology, snapshot: QueueSnapshot) -> dict[str, Any]:
    rows = [
        {
            "queue": s.name,
            "kind": queue_kind(topology, s.name),
            "messages": s.messages,
            "consumers": s.consumers,
        }
        for s in snapshot.stats
        if s.exists
    ]
    return {"as_of": iso(snapshot.as_of), "error": snapshot.error, "list": rows}


# ---- agents ----
def agent_json(line: AgentLine, beat: Beat | None, now: datetime) -> dict[str, Any]:
    agent = line.row.agent
    return {
        "agent_id": agent.agent_id,
        "status": agent.status,
        "capabilities": list(agent.capabilities),
        "capacity": agent.capacity,
        "load": line.load,
        "reported_load": beat.load if beat else None,
        "last_heartbeat_at": iso(beat.at) if beat else None,
        "last_heartbeat_age_s": round((now - beat.at).total_seconds(), 1) if beat else None,
        "heartbeat_interval_s": agent.heartbeat_interval_s,
        "labels": dict(agent.labels),
        "software_version": agent.software_version,
        "first_seen_at": iso(line.row.joined_at),
        "changed_at": iso(line.row.updated_at),
    }


def agents_json(view: FleetView, beats: HeartbeatBook, now: datetime) -> dict[str, Any]:
    lines = sorted(view.agents, key=lambda line: line.agent_id)
    return {
        "by_status": dict(Counter(line.status for line in lines)),
        "list": [agent_json(line, beats.get(line.agent_id), now) for line in lines],
    }


# ---- tasks ----
def _time(text: str | None) -> str | None:
    return iso(datetime.fromisoformat(text)) if text else None


def task_json(row: TaskRow) -> dict[str, Any]:
    changed = max(t for t in (row.submitted_at, row.started_at, row.ended_at) if t)
    return {
        "task_id": row.task_id,
        "state": row.state,
        "capability": row.capability or "",
        "priority": row.priority or 0,
        "attempt": row.attempt,
        "agent_id": row.agent_id,
        "progress": row.progress,
        "error": row.error,
        "submitted_at": _time(row.submitted_at),
        "changed_at": _time(changed),
    }


def tasks_json(view: FleetView, *, recent: int = RECENT_ON_PAGE) -> dict[str, Any]:
    by_state = {s: view.by_state.get(s, 0) for s in TASK_STATES}
    by_state.update({s: n for s, n in view.by_state.items() if s not in by_state})
    return {
        "by_state": by_state,
        "total": sum(view.by_state.values()),
        "open": view.open,
        "recent": [task_json(row) for row in view.recent[:recent]],
    }


def throughput_json(throughput: Throughput, now: datetime) -> dict[str, Any]:
    start, counts = throughput.series(now)
    return {
        "bucket_s": 1,
        "window_s": len(counts),
        "start": start,  # Unix second of counts[0]; the last entry is the current second
        "finished": counts,
        "rate_per_s": round(throughput.rate(now, RATE_OVER_S), 2),
        "rate_over_s": RATE_OVER_S,
    }


# ---- dead letters ----
def dead_letter_href(letter_id: str) -> str:
    return f"/api/deadletters/{letter_id}"


def summary_line(s: DeadLetterSummary) -> dict[str, Any]:
    return {
        "id": s.id,
        "reason": s.reason,
        "queue": s.queue,
        "type": s.message_type,
        "attempts": s.attempts,
        "last_death_at": iso(s.last_death_at),
        "error": s.error,
        "href": dead_letter_href(s.id),
    }


def dead_letters_json(snapshot: DeadLetterSnapshot, queues: QueueSnapshot) -> dict[str, Any]:
    by_reason: dict[str, dict[str, Any]] = {}
    for (queue, reason), count in sorted(snapshot.counts.items()):
        entry = by_reason.setdefault(reason, {"reason": reason, "count": 0, "queues": {}})
        entry["count"] += count
        entry["queues"][queue] = count
    letters: dict[str, list[dict[str, Any]]] = {}
    for summary in snapshot.recent:
        letters.setdefault(summary.reason, []).append(summary_line(summary))
    reasons = sorted(by_reason.values(), key=lambda e: (-e["count"], e["reason"]))
    for entry in reasons:
        entry["letters"] = letters.get(entry["reason"], [])
    waiting = sum(s.messages for s in queues.stats if s.exists and s.name.endswith(".dlq"))
    return {
        "as_of": iso(snapshot.as_of),
        "error": snapshot.error,
        "total": sum(snapshot.counts.values()),
        "by_reason": reasons,
        # in a DLQ, not yet in the archive: `rally dlq list` moves them (the dashboard only reads)
        "waiting_in_queues": waiting,
    }


# ---- the whole page ----
def overview(
    *,
    now: datetime,
    namespace: str,
    refresh_s: float,
    store: StoreState,
    view: FleetView,
    throughput: Throughput,
    beats: HeartbeatBook,
    queues: QueueSnapshot,
    dead_letters: DeadLetterSnapshot,
    topology: Topology,
) -> dict[str, Any]:
    return {
        "generated_at": iso(now),
        "namespace": namespace,
        "refresh_s": refresh_s,
        "store": {
            "url": store.url,
            "position": store.position,
            "behind": store.behind,
            # a record a read model cannot read stops it there (workers/readmodels/runner.py)
            "unreadable_events": len(view.stopped),
            "last_unreadable": "; ".join(f"{h.name}: {h.error}" for h in view.stopped) or None,
            "error": store.error,
        },
        "agents": agents_json(view, beats, now),
        "tasks": tasks_json(view),
        "throughput": throughput_json(throughput, now),
        "queues": queues_json(topology, queues),
        "dead_letters": dead_letters_json(dead_letters, queues),
    }
