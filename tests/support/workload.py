"""Load for the fault tests, and the verdict: what the broker confirmed against the history.

A task is *accepted* when the broker confirmed its ``SubmitTask``. A submission
that raised (no confirm: connection lost, time-out, memory alarm) may or may
not have reached the broker; it is *attempted*, and may show up in the history
or not. The verdict is read from the event store alone (workers/history_check).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from contracts import Backoff
from sdk import Client
from workers.history_check import (
    TERMINAL,
    HistoryReport,
    Ledger,
    check_history,
    duplicate_effects,
    reconcile,
)
from workers.store.base import EventStore, RecordedEvent

FAST_BACKOFF = Backoff(initial_s=0.05, factor=2.0, max_s=0.5)


@dataclass
class Workload:
    """Submits tasks through a real SDK client and remembers what was confirmed."""

    client: Client
    capability: str = "work"
    payload: dict[str, Any] = field(default_factory=lambda: {"ms": 20})
    max_attempts: int = 10  # faults use up attempts (a lost agent's); the task must not die
    timeout_s: float = 30.0
    accepted: set[UUID] = field(default_factory=set)
    attempted: set[UUID] = field(default_factory=set)  # no confirm: fate unknown to the sender
    earlier: set[UUID] = field(default_factory=set)  # sent by earlier tests on the same fleet
    errors: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0  # the longest a submit call took, confirmed or not

    def next(self) -> Workload:
        """A fresh ledger on the same client: what this one sent is no longer judged."""
        return Workload(
            self.client,
            self.capability,
            dict(self.payload),
            self.max_attempts,
            self.timeout_s,
            earlier=self.earlier | self.accepted | self.attempted,
        )

    async def submit_one(self, **overrides: Any) -> UUID | None:
        task_id = uuid4()
        self.attempted.add(task_id)
        started = time.monotonic()
        options: dict[str, Any] = {
            "task_id": task_id,
            "max_attempts": self.max_attempts,
            "timeout_s": self.timeout_s,
            "backoff": FAST_BACKOFF,
            **overrides,
        }
        capability = options.pop("capability", self.capability)
        payload = options.pop("payload", self.payload)
        try:
            await self.client.submit(capability, payload, **options)
        except (TypeError, ValueError, AttributeError):
            raise  # a mistake in the test, not a fault
        except Exception as exc:  # every failure to confirm; the ledger decides what it means
            self.errors[type(exc).__name__] += 1
            return None
        finally:
            self.slowest_s = max(self.slowest_s, time.monotonic() - started)
        self.attempted.discard(task_id)
        self.accepted.add(task_id)
        return task_id

    async def submit(self, count: int, *, concurrency: int = 25) -> int:
        """Submit ``count`` tasks, ``concurrency`` at a time; how many were confirmed."""
        before = len(self.accepted)
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                await self.submit_one()

        await asyncio.gather(*(one() for _ in range(count)))
        return len(self.accepted) - before

    async def steady(self, stop: asyncio.Event, per_second: float, *, limit: int) -> None:
        """Submit at about ``per_second`` until ``stop`` is set or ``limit`` were sent."""
        sent: set[asyncio.Task[UUID | None]] = set()
        interval = 1.0 / per_second
        while not stop.is_set() and len(self.accepted) + len(self.attempted) < limit:
            task = asyncio.create_task(self.submit_one())
            sent.add(task)
            task.add_done_callback(sent.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
        if sent:
            await asyncio.wait(sent)


class HistoryReader:
    """The whole history, read incrementally."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.events: list[RecordedEvent] = []
        self._ended: set[str] = set()

    async def refresh(self) -> list[RecordedEvent]:
        while True:
            position = self.events[-1].position if self.events else 0
            page = await self.store.read_all(position, 5000)
            for event in page:
                if event.type in TERMINAL:
                    self._ended.add(str(event.data.get("task_id")))
            self.events += page
            if len(page) < 5000:
                return self.events

    async def ended(self) -> set[str]:
        await self.refresh()
        return self._ended

    async def wait_ended(self, task_ids: Iterable[UUID], timeout: float) -> None:
        """Until every task has a terminal event; on time-out, say which have not."""
        wanted = {str(t) for t in task_ids}
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - await self.ended()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(missing)} of {len(wanted)} tasks did not end within {timeout:.0f}s; "
                    f"e.g. {sorted(missing)[:3]}\n{self.story(next(iter(missing)))}"
                )
            await asyncio.sleep(0.25)

    async def wait_for(
        self, stream: str, type_name: str, *, count: int = 1, timeout: float = 20.0
    ) -> list[RecordedEvent]:
        """The first ``count`` events of this type in this stream, once recorded."""
        deadline = time.monotonic() + timeout
        while True:
            await self.refresh()
            found = [e for e in self.stream(stream) if e.type == type_name]
            if len(found) >= count:
                return found[:count]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {count} x {type_name} in {stream} within {timeout:.0f}s: "
                    f"{[e.type for e in self.stream(stream)]}"
                )
            await asyncio.sleep(0.1)

    def of_type(self, *types: str) -> list[RecordedEvent]:
        return [e for e in self.events if e.type in types]

    def stream(self, stream: str) -> list[RecordedEvent]:
        return [e for e in self.events if e.stream == stream]

    def story(self, task_id: str) -> str:
        lines = [
            f"  v{e.version} {e.type} {e.metadata.get('worker')} {dict(e.data)}"[:300]
            for e in self.stream(f"task-{task_id}")
        ]
        return f"task-{task_id}:\n" + "\n".join(lines)


@dataclass
class Verdict:
    report: HistoryReport
    ledger: Ledger
    # how this workload's tasks ended (accepted, and unconfirmed ones that arrived)
    ended: Counter[str] = field(default_factory=Counter)

    @property
    def counts(self) -> dict[str, int]:
        return {
            **self.ledger.counts(),
            "succeeded": self.ended["TaskSucceeded"],
            "dead": self.ended["TaskDead"],
            "cancelled": self.ended["TaskCancelled"],
            "reassigned": self.report.reassigned,
            "violations": len(self.report.violations),
        }

    def problems(self) -> list[str]:
        ledger = self.ledger
        return [*self.report.violations, *ledger.lost, *ledger.duplicated, *ledger.unexpected]


def judge(history: list[RecordedEvent], workload: Workload) -> Verdict:
    report = check_history(history)
    ledger = reconcile(
        report,
        (str(t) for t in workload.accepted),
        attempted=(str(t) for t in workload.attempted | workload.earlier),
        duplicates=duplicate_effects(history),
    )
    ours = {str(t) for t in workload.accepted | workload.attempted}
    ended = Counter(state for task, state in report.states.items() if task in ours and state)
    return Verdict(report, ledger, ended)
