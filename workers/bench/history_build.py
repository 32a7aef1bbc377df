"""A long history in seconds: the events the real domain functions decide, appended in batches.

Running 100,000 tasks through the broker to age a store would take longer than
the bench itself, so the builder plays the fleet's part on paper: it asks the
same pure functions the workers ask (``decide_submit`` for a submit,
``placement.assign`` for an assignment, ``tasks.domain.decide`` for every
report, cancel and timer, ``registry.domain.decide`` for agents) and appends
what they answer straight into the store, many requests per transaction
(``append_batch``), each with the metadata and processed-message id a worker
would have written. No outbox row is written: the history is one whose
messages were all published long ago.

The mix is a demo's: mostly successes, some failed once and retried, a few
dead or cancelled, some with progress reports, idempotency keys or a
dependency on an earlier task, over a dozen agents. Tasks overlap in time as
in a live fleet (their steps are interleaved). The last few tasks stay open
(pending or running), as in a fleet stopped mid-run; their number does not
grow with the history, since a fleet's work in flight does not grow with its
age.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from contracts import (
    DEFAULT_MAX_BYTES,
    CancelTask,
    Event,
    RegisterAgent,
    ReportTaskFailed,
    ReportTaskProgress,
    ReportTaskStarted,
    ReportTaskSucceeded,
    SubmitTask,
    TaskTimerDue,
)
from workers.registry import domain as registry_domain
from workers.registry import state as registry_state
from workers.runtime.messages import new_event
from workers.store.base import AppendRequest, BatchEventStore, Metadata, StreamAppend
from workers.store.errors import ConcurrencyError
from workers.tasks import domain as tasks_domain
from workers.tasks.placement import assign
from workers.tasks.state import Task, evolve, stream_of
from workers.tasks.submit import Submitter, decide_submit

CAPABILITIES = ("crawl", "parse", "summarize", "render")
CLIENT = "history-client"
CHUNK = 2_000  # tasks whose steps are interleaved with each other


def never_published(_category: str, _type: str) -> bool:
    """The builder's store ``publishes``: no outbox rows, the history's messages went long ago."""
    return False


@dataclass(frozen=True, slots=True)
class HistoryShape:
    tasks: int
    agents: int = 12
    open_tasks: int = 20  # left pending or running at the end, whatever the size
    seed: int = 16
    rate_per_s: float = 200.0  # how fast the simulated fleet took submits
    batch: int = 1_000  # append requests per transaction

    def __post_init__(self) -> None:
        if self.tasks < 1 or self.agents < 1 or self.batch < 1:
            raise ValueError("a history needs at least one task, one agent and a batch of 1")


@dataclass
class BuiltHistory:
    tasks: int
    events: int
    seconds: float
    agents: list[str]
    open_task_ids: set[str]
    sample_task_id: str  # an ended task from the middle of the history, for `task show`
    outcomes: Counter[str] = field(default_factory=Counter)  # fate -> tasks


@dataclass(frozen=True, slots=True)
class _Step:
    at: float  # simulated seconds since the history began
    order: int  # ties keep the task's own order
    request: AppendRequest


class _Clock:
    """Simulated time: the history ends now and began ``tasks / rate`` seconds ago."""

    def __init__(self, shape: HistoryShape) -> None:
        self.origin = datetime.now(UTC) - timedelta(seconds=shape.tasks / shape.rate_per_s + 120)

    def at(self, seconds: float) -> datetime:
        return self.origin + timedelta(seconds=seconds)


@dataclass
class _Agents:
    ids: list[str]
    by_capability: dict[str, list[str]]
    turn: Counter[str] = field(default_factory=Counter)

    def next_for(self, capability: str) -> str:
        pool = self.by_capability[capability]
        self.turn[capability] += 1
        return pool[self.turn[capability] % len(pool)]


def _meta(worker: str, sender: str, correlation: str | None = None) -> tuple[Metadata, str]:
    message_id = str(uuid.uuid4())
    meta = Metadata(
        message_id=message_id,
        causation_id=message_id,
        correlation_id=correlation or message_id,
        sender=sender,
        worker=worker,
        replica="0",
    )
    return meta, message_id


class _TaskWriter:
    """One task's life as append requests, each decided by the domain's own functions."""

    def __init__(self, clock: _Clock, start: float, task_id: UUID) -> None:
        self.clock = clock
        self.now = start
        self.task = Task(task_id)
        self.steps: list[_Step] = []
        self.correlation = str(uuid.uuid4())

    def _record(self, events: Sequence[Event], worker: str, sender: str, *, key: bool) -> None:
        if not events:
            raise AssertionError(f"the domain decided nothing for task {self.task.task_id}")
        meta, message_id = _meta(worker, sender, self.correlation)
        append = StreamAppend(
            stream_of(self.task.task_id), self.task.version, [new_event(e) for e in events]
        )
        request = AppendRequest([append], meta, message_id if key else None)
        self.steps.append(_Step(self.now, len(self.steps), request))
        for event in events:
            self.task = evolve(self.task, event)

    def submit(self, cmd: SubmitTask, deps: dict[UUID, Task]) -> None:
        by = Submitter("guest", service=True, sender=CLIENT)
        when = self.clock.at(self.now)
        decision = decide_submit(cmd, by, self.task, deps, None, when, DEFAULT_MAX_BYTES)
        meta, message_id = _meta("tasks", CLIENT, self.correlation)
        appends = [
            StreamAppend(a.stream, a.expected_version, [new_event(e) for e in a.events])
            for a in decision.appends
        ]
        self.steps.append(_Step(self.now, 0, AppendRequest(appends, meta, message_id)))
        for event in decision.appends[0].events:
            self.task = evolve(self.task, event)

    def assign(self, agent: str) -> None:
        self.now += 0.002
        assignment = assign(self.task, agent, reason="capability")
        self._record(assignment.events, "allocator", "allocator", key=False)

    def report(self, cmd: tasks_domain.Command, sender: str, after_s: float = 0.02) -> None:
        self.now += after_s
        events = tasks_domain.decide(self.task, cmd, self.clock.at(self.now))
        worker = "tasks" if sender != "allocator" else "allocator"
        self._record(events, worker, sender, key=sender != "allocator")

    def _held(self) -> tuple[str, int, int]:
        task = self.task
        assert task.agent_id is not None
        assert task.fencing_token is not None
        return task.agent_id, task.attempt, task.fencing_token

    def started(self) -> None:
        agent, attempt, token = self._held()
        tid = self.task.task_id
        cmd = ReportTaskStarted(task_id=tid, agent_id=agent, attempt=attempt, fencing_token=token)
        self.report(cmd, agent, 0.003)

    def progress(self, fraction: float) -> None:
        agent, attempt, token = self._held()
        cmd = ReportTaskProgress(
            task_id=self.task.task_id,
            agent_id=agent,
            attempt=attempt,
            fencing_token=token,
            progress=fraction,
            message=f"{int(fraction * 100)}% done",
        )
        self.report(cmd, agent, 0.01)

    def succeed(self, result: dict[str, Any]) -> None:
        agent, attempt, token = self._held()
        cmd = ReportTaskSucceeded(
            task_id=self.task.task_id,
            agent_id=agent,
            attempt=attempt,
            fencing_token=token,
            result=result,
        )
        self.report(cmd, agent)

    def fail(self, error: str, *, retryable: bool) -> None:
        agent, attempt, token = self._held()
        cmd = ReportTaskFailed(
            task_id=self.task.task_id,
            agent_id=agent,
            attempt=attempt,
            fencing_token=token,
            error=error,
            error_type="RuntimeError" if retryable else "ValueError",
            retryable=retryable,
        )
        self.report(cmd, agent)

    def retry_timer(self) -> None:
        """The retry timer fires after the back-off the failure scheduled."""
        delay = self.task.backoff.delay_for(self.task.attempt)
        timer = TaskTimerDue(
            task_id=self.task.task_id, attempt=self.task.next_attempt, timer="retry"
        )
        self.report(timer, "tasks", delay)

    def cancel(self) -> None:
        self.report(CancelTask(task_id=self.task.task_id, reason="cancelled by its owner"), CLIENT)


def _agents(shape: HistoryShape) -> tuple[_Agents, list[_Step]]:
    ids = [f"history-agent-{i:02d}" for i in range(shape.agents)]
    by_capability: dict[str, list[str]] = {c: [] for c in CAPABILITIES}
    steps: list[_Step] = []
    for i, agent_id in enumerate(ids):
        caps = tuple(CAPABILITIES[(i + k) % len(CAPABILITIES)] for k in range(2))
        for cap in caps:
            by_capability[cap].append(agent_id)
        cmd = RegisterAgent(
            agent_id=agent_id,
            capabilities=caps,
            capacity=64,
            labels={"zone": f"z{i % 3}"},
            software_version="history",
            heartbeat_interval_s=5.0,
        )
        state = registry_state.Agent(agent_id)
        events = registry_domain.decide(state, cmd, datetime.now(UTC))
        meta, message_id = _meta("registry", agent_id)
        append = StreamAppend(registry_state.stream_of(agent_id), 0, [new_event(e) for e in events])
        steps.append(_Step(0.0, i, AppendRequest([append], meta, message_id)))
    for cap, pool in by_capability.items():
        if not pool:  # fewer agents than capabilities: the first agent does the rest
            pool.append(ids[0])
            by_capability[cap] = pool
    return _Agents(ids, by_capability), steps


def _fate(rng: random.Random) -> str:
    roll = rng.random()
    for limit, fate in (
        (0.005, "cancelled_pending"),
        (0.010, "cancelled_running"),
        (0.025, "dead_rejected"),
        (0.030, "dead_exhausted"),
        (0.090, "retried"),
        (0.120, "progress"),
    ):
        if roll < limit:
            return fate
    return "succeeded"


@dataclass
class _Builder:
    shape: HistoryShape
    agents: _Agents
    clock: _Clock
    rng: random.Random
    recent: list[Task] = field(default_factory=list)  # succeeded tasks a new one may depend on
    built: BuiltHistory | None = None

    def task(self, i: int) -> tuple[str, list[_Step], Task]:
        rng, shape = self.rng, self.shape
        capability = CAPABILITIES[i % len(CAPABILITIES)]
        writer = _TaskWriter(self.clock, i / shape.rate_per_s, uuid.uuid4())
        deps: dict[UUID, Task] = {}
        if self.recent and rng.random() < 0.03:
            dep = self.recent[rng.randrange(len(self.recent))]
            deps[dep.task_id] = dep
        cmd = SubmitTask(
            task_id=writer.task.task_id,
            capability=capability,
            payload={"url": f"https://example.org/doc/{i}", "ms": rng.randint(5, 40)},
            priority=rng.choice((0, 0, 0, 1, 5)),
            idempotency_key=f"history-{writer.task.task_id}" if rng.random() < 0.1 else None,
            max_attempts=3,
            depends_on=tuple(deps),
        )
        writer.submit(cmd, deps)
        open_from = shape.tasks - min(shape.open_tasks, shape.tasks // 2)
        fate = ("pending" if i % 2 else "running") if i >= open_from else _fate(rng)
        if fate in ("pending", "cancelled_pending"):
            if fate == "cancelled_pending":
                writer.cancel()
            return fate, writer.steps, writer.task
        writer.assign(self.agents.next_for(capability))
        if fate == "running":
            writer.started()
            return fate, writer.steps, writer.task
        if fate == "cancelled_running":
            writer.started()
            writer.cancel()
        elif fate == "dead_rejected":
            writer.fail("input is not a document", retryable=False)
        elif fate in ("retried", "dead_exhausted"):
            for _ in range(writer.task.max_attempts if fate == "dead_exhausted" else 1):
                writer.fail("upstream timed out", retryable=True)
                if writer.task.terminal:
                    break
                writer.retry_timer()
                writer.assign(self.agents.next_for(capability))
            if not writer.task.terminal:
                writer.succeed({"ok": True, "bytes": rng.randint(100, 90_000)})
        else:
            if fate == "progress":
                writer.started()
                writer.progress(0.5)
            writer.succeed({"ok": True, "bytes": rng.randint(100, 90_000)})
        if writer.task.state == "succeeded":
            self.recent.append(writer.task)
            if len(self.recent) > 50:
                self.recent.pop(0)
        return fate, writer.steps, writer.task


async def build_history(
    store: BatchEventStore,
    shape: HistoryShape,
    progress: Callable[[str], None] | None = None,
) -> BuiltHistory:
    """Append a history of ``shape.tasks`` tasks to ``store`` (started, empty or not)."""
    started = time.perf_counter()
    agents, agent_steps = _agents(shape)
    builder = _Builder(shape, agents, _Clock(shape), random.Random(shape.seed))
    built = BuiltHistory(shape.tasks, 0, 0.0, agents.ids, set(), "")
    built.events += await _append(store, [s.request for s in agent_steps], shape.batch)
    middle = shape.tasks // 2
    for first in range(0, shape.tasks, CHUNK):
        steps: list[_Step] = []
        for i in range(first, min(first + CHUNK, shape.tasks)):
            fate, task_steps, task = builder.task(i)
            built.outcomes[fate] += 1
            steps += task_steps
            if fate in ("pending", "running"):
                built.open_task_ids.add(str(task.task_id))
            elif not built.sample_task_id or (i <= middle and task.terminal):
                built.sample_task_id = str(task.task_id)
        steps.sort(key=lambda s: (s.at, s.order))
        built.events += await _append(store, [s.request for s in steps], shape.batch)
        if progress is not None and (first // CHUNK) % 10 == 9:
            progress(f"history: {first + CHUNK:,} of {shape.tasks:,} tasks written")
    built.seconds = time.perf_counter() - started
    return built


async def _append(store: BatchEventStore, requests: list[AppendRequest], batch: int) -> int:
    events = 0
    for start in range(0, len(requests), batch):
        part = requests[start : start + batch]
        for outcome in await store.append_batch(part):
            if isinstance(outcome, ConcurrencyError):
                raise RuntimeError(f"history builder conflicted with itself: {outcome}")
            events += len(outcome.positions)
    return events
