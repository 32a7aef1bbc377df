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
  again or ended;
- every recorded event can be read back as its contract.

Records are decoded into their contract models; a task's state is the tasks
domain's one fold (``workers.tasks.state``) and an agent's the registry's
(``workers.registry.state``). The checker adds only what the promises need
beside them: which tasks each agent holds, and what has already ended.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from contracts import (
    AgentLeft,
    AgentLost,
    ContractError,
    Event,
    LeaseExpired,
    LeaseGranted,
    LeaseReleased,
    ResourceDeclared,
    TaskAssigned,
    TaskCancelled,
    TaskDead,
    TaskFailed,
    TaskSubmitted,
    TaskSucceeded,
)
from workers.registry import state as registry
from workers.runtime.messages import load_event
from workers.store.base import RecordedEvent
from workers.tasks.placement import task_of
from workers.tasks.state import ACTIVE, Task, evolve

TERMINAL_EVENTS = (TaskSucceeded, TaskCancelled, TaskDead)
# their type names: the keys of HistoryReport.terminal and the values of its states
TERMINAL = frozenset(t.type_name() for t in TERMINAL_EVENTS)


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


def check_history(events: Iterable[RecordedEvent]) -> HistoryReport:
    checker = _Checker()
    for record in sorted(events, key=lambda e: e.position):
        checker.apply(record)
    return checker.finish()


def _holder(task: Task) -> str | None:
    """The agent holding the task's current attempt, by the task fold."""
    return task.agent_id if task.state in ACTIVE else None


@dataclass
class _Checker:
    report: HistoryReport = field(default_factory=HistoryReport)
    tasks: dict[UUID, Task] = field(default_factory=dict)
    agents: dict[str, registry.Agent] = field(default_factory=dict)
    held_by: defaultdict[str, set[UUID]] = field(default_factory=lambda: defaultdict(set))
    # terminal events per task: the fold keeps only the last state, the promise counts them
    ended: Counter[UUID] = field(default_factory=Counter)
    orphaned: dict[UUID, str] = field(default_factory=dict)  # task -> agent it was taken from
    placed_again: set[UUID] = field(default_factory=set)
    resource_capacity: dict[str, int] = field(default_factory=dict)
    leases: Counter[str] = field(default_factory=Counter)
    live_leases: set[UUID] = field(default_factory=set)

    def apply(self, record: RecordedEvent) -> None:
        try:
            event = load_event(record)
        except (ContractError, TypeError) as exc:
            self.report.violations.append(
                f"{record.type} at position {record.position} ({record.stream}) "
                f"cannot be read: {exc}"
            )
            return
        task_id = task_of(record.stream)
        agent_id = registry.agent_of(record.stream)
        if task_id is not None:
            self._task(task_id, event)
        elif agent_id is not None:
            self._agent(agent_id, event)
        else:
            self._resource(event)

    def _task(self, task_id: UUID, event: Event) -> None:
        report, key = self.report, str(task_id)
        before = self.tasks.get(task_id) or Task(task_id)
        after = self.tasks[task_id] = evolve(before, event)
        match event:
            case TaskSubmitted():
                report.submitted += 1
                report.states.setdefault(key, "")
            case TaskAssigned(agent_id=agent):
                report.assignments += 1
                if self.ended[task_id]:
                    report.violations.append(f"task {key} assigned after it ended")
                if (held := _holder(before)) is not None:
                    report.violations.append(f"task {key} assigned to {agent} while held by {held}")
                if self.orphaned.get(task_id, agent) != agent:
                    self.placed_again.add(task_id)
            case TaskFailed():
                report.failed_attempts += 1
        self._hold(task_id, _holder(before), _holder(after))
        if isinstance(event, TERMINAL_EVENTS):
            kind = event.type_name()
            self.ended[task_id] += 1
            report.terminal[kind] += 1
            if self.ended[task_id] > 1:
                report.violations.append(f"task {key} ended twice (again with {kind})")
            report.states[key] = kind

    def _hold(self, task_id: UUID, before: str | None, after: str | None) -> None:
        """Move the task between agents' holdings as the fold's holder changes."""
        if before == after:
            return
        if before is not None:
            self.held_by[before].discard(task_id)
        if after is None:
            return
        held = self.held_by[after]
        held.add(task_id)
        load, report = len(held), self.report
        report.max_agent_load[after] = max(report.max_agent_load.get(after, 0), load)
        agent = self.agents.get(after)
        # capacity 0: the agent never joined, so it declared none to hold it to
        if agent is not None and agent.capacity and load > agent.capacity:
            report.violations.append(f"agent {after} over capacity: {load} > {agent.capacity}")

    def _agent(self, agent_id: str, event: Event) -> None:
        before = self.agents.get(agent_id) or registry.Agent(agent_id)
        self.agents[agent_id] = registry.evolve(before, event)
        match event:
            case AgentLost() | AgentLeft():
                for task_id in sorted(self.held_by.get(agent_id, ())):
                    if not self.ended[task_id]:
                        self.orphaned[task_id] = agent_id

    def _resource(self, event: Event) -> None:
        report = self.report
        match event:
            case ResourceDeclared(resource=resource):
                self.resource_capacity[resource] = event.capacity
            case LeaseGranted(resource=resource):
                self.live_leases.add(event.lease_id)
                self.leases[resource] += 1
                use = self.leases[resource]
                report.max_resource_use[resource] = max(
                    report.max_resource_use.get(resource, 0), use
                )
                cap = self.resource_capacity.get(resource)
                if cap is not None and use > cap:
                    report.violations.append(f"resource {resource} over capacity: {use} > {cap}")
            case LeaseReleased() | LeaseExpired():
                if event.lease_id in self.live_leases:
                    self.live_leases.discard(event.lease_id)
                    self.leases[event.resource] -= 1

    def finish(self) -> HistoryReport:
        report = self.report
        report.reassigned = len(self.placed_again)
        for task_id, agent in self.orphaned.items():
            if task_id not in self.placed_again and not self.ended[task_id]:
                report.violations.append(
                    f"task {task_id} of lost agent {agent} was never placed again"
                )
        for task in report.unfinished():
            report.violations.append(f"task {task} never reached a terminal state")
        return report


# ---- against what was accepted, and effects applied twice ----


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


def duplicate_effects(events: Iterable[RecordedEvent]) -> list[str]:
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
