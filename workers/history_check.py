"""Check a whole event history for the promises rallypoint makes.

Used by the end-to-end and fault-injection tests, and by `rally demo` to decide
its exit code: the verdict comes from the recorded history alone, never from
what a process believes happened.

Promises checked:
- every submitted task ends in exactly one terminal state (succeeded, cancelled, dead);
- no task succeeds twice, and nothing happens to a task after its terminal event;
- no agent ever holds more assignments than its capacity;
- no resource ever has more leases than its capacity;
- every task an agent held when it was lost (or left without draining) was placed
  again or ended.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

TERMINAL = frozenset({"TaskSucceeded", "TaskCancelled", "TaskDead"})
ATTEMPT_ENDS = frozenset(
    {"TaskSucceeded", "TaskFailed", "TaskCancelled", "TaskDead", "TaskRequeued"}
)


class HistoryEvent(Protocol):
    @property
    def position(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


@dataclass
class HistoryReport:
    submitted: int = 0
    terminal: Counter[str] = field(default_factory=Counter)
    assignments: int = 0
    failed_attempts: int = 0
    reassigned: int = 0  # tasks taken from a lost agent and placed on another
    max_agent_load: dict[str, int] = field(default_factory=dict)
    max_resource_use: dict[str, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)  # task id -> last terminal type or ""
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def unfinished(self) -> list[str]:
        return [task for task, state in self.states.items() if not state]


def check_history(events: Iterable[HistoryEvent]) -> HistoryReport:
    report = HistoryReport()
    capacity: dict[str, int] = {}
    resource_capacity: dict[str, int] = {}
    load: Counter[str] = Counter()
    leases: Counter[str] = Counter()
    live_leases: set[str] = set()
    holder: dict[str, str] = {}
    terminal_count: Counter[str] = Counter()
    orphaned: dict[str, str] = {}  # task -> agent it was taken from
    after_loss_placed: set[str] = set()
    held_by: defaultdict[str, set[str]] = defaultdict(set)

    for event in sorted(events, key=lambda e: e.position):
        data, kind = event.data, event.type
        task = str(data.get("task_id", ""))
        if kind in ("AgentJoined", "AgentUpdated"):
            capacity[str(data["agent_id"])] = int(data["capacity"])
        elif kind == "ResourceDeclared":
            resource_capacity[str(data["resource"])] = int(data["capacity"])
        elif kind == "TaskSubmitted":
            report.submitted += 1
            report.states.setdefault(task, "")
        elif kind == "TaskAssigned":
            agent = str(data["agent_id"])
            report.assignments += 1
            if terminal_count[task]:
                report.violations.append(f"task {task} assigned after it ended")
            if task in holder:
                report.violations.append(
                    f"task {task} assigned to {agent} while held by {holder[task]}"
                )
            holder[task] = agent
            held_by[agent].add(task)
            load[agent] += 1
            report.max_agent_load[agent] = max(report.max_agent_load.get(agent, 0), load[agent])
            cap = capacity.get(agent)
            if cap is not None and load[agent] > cap:
                report.violations.append(f"agent {agent} over capacity: {load[agent]} > {cap}")
            if task in orphaned and orphaned[task] != agent:
                after_loss_placed.add(task)
        elif kind == "LeaseGranted":
            resource = str(data["resource"])
            live_leases.add(str(data["lease_id"]))
            leases[resource] += 1
            report.max_resource_use[resource] = max(
                report.max_resource_use.get(resource, 0), leases[resource]
            )
            cap = resource_capacity.get(resource)
            if cap is not None and leases[resource] > cap:
                report.violations.append(
                    f"resource {resource} over capacity: {leases[resource]} > {cap}"
                )
        elif kind in ("LeaseReleased", "LeaseExpired"):
            lease = str(data["lease_id"])
            if lease in live_leases:
                live_leases.discard(lease)
                leases[str(data["resource"])] -= 1
        elif kind in ("AgentLost", "AgentLeft"):
            agent = str(data["agent_id"])
            for held in held_by.get(agent, set()):
                if holder.get(held) == agent and not terminal_count[held]:
                    orphaned[held] = agent
        if kind == "TaskFailed":
            report.failed_attempts += 1
        if kind in ATTEMPT_ENDS and task in holder:
            agent = holder.pop(task)
            held_by[agent].discard(task)
            load[agent] -= 1
        if kind in TERMINAL:
            terminal_count[task] += 1
            report.terminal[kind] += 1
            if terminal_count[task] > 1:
                report.violations.append(f"task {task} ended twice (again with {kind})")
            report.states[task] = kind

    report.reassigned = len(after_loss_placed)
    for task, agent in orphaned.items():
        if task not in after_loss_placed and not terminal_count[task]:
            report.violations.append(f"task {task} of lost agent {agent} was never placed again")
    for task in report.unfinished():
        report.violations.append(f"task {task} never reached a terminal state")
    return report


# ---- against what was accepted, and effects applied twice ----


class StoredEvent(HistoryEvent, Protocol):
    """What the integrity check needs besides the type and data: where and why it was written."""

    @property
    def stream(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def metadata(self) -> Mapping[str, Any]: ...


@dataclass
class Ledger:
    """What was accepted (confirmed by the broker) against what the history holds."""

    accepted: int = 0
    terminal: int = 0  # accepted tasks with exactly one terminal event
    lost: list[str] = field(default_factory=list)  # accepted, never recorded or never ended
    duplicated: list[str] = field(default_factory=list)  # an effect applied twice
    unexpected: list[str] = field(default_factory=list)  # recorded, yet nobody sent it

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def counts(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "terminal": self.terminal,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unexpected": len(self.unexpected),
        }


def duplicate_effects(events: Iterable[StoredEvent]) -> list[str]:
    """Effects applied twice, and holes in a stream's versions.

    One message decides once: it never yields two events of the same type for
    one stream, so the same (stream, causing message id, type) twice means the
    message was applied twice. Each stream's versions must run 1..n.
    """
    problems: list[str] = []
    versions: defaultdict[str, list[int]] = defaultdict(list)
    seen: Counter[tuple[str, str, str]] = Counter()
    for event in events:
        versions[event.stream].append(event.version)
        message_id = event.metadata.get("message_id")
        if message_id:
            seen[(event.stream, str(message_id), event.type)] += 1
    for (stream, message_id, kind), count in seen.items():
        if count > 1:
            problems.append(f"{stream}: message {message_id} applied {count} times ({kind})")
    for stream, found in versions.items():
        if sorted(found) != list(range(1, len(found) + 1)):
            problems.append(f"{stream}: versions not contiguous from 1: {sorted(found)[:20]}")
    return problems


def reconcile(
    report: HistoryReport,
    accepted: Iterable[str],
    *,
    attempted: Iterable[str] = (),
    duplicates: Iterable[str] = (),
) -> Ledger:
    """Compare the history's tasks with the submissions the broker confirmed.

    ``accepted``: task ids whose submission was confirmed; each must be recorded and
    end in exactly one terminal state. ``attempted``: submissions whose outcome the
    sender could not know (no confirm): they may or may not be in the history. A
    task in the history that is in neither was never sent by anyone: unexpected.
    """
    accepted_ids = {str(a) for a in accepted}
    known = accepted_ids | {str(a) for a in attempted}
    ledger = Ledger(accepted=len(accepted_ids), duplicated=list(duplicates))
    for task in sorted(accepted_ids):
        if task not in report.states:
            ledger.lost.append(f"task {task} accepted but never recorded")
        elif not report.states[task]:
            ledger.lost.append(f"task {task} accepted but never ended")
        else:
            ledger.terminal += 1
    ledger.duplicated += [v for v in report.violations if "ended twice" in v]
    ledger.unexpected = sorted(
        f"task {t} recorded but never sent" for t in report.states if t not in known
    )
    return ledger
