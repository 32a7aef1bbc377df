"""Outcomes matched to the handles waiting for them, including those that arrive first.

The task manager may answer before the caller awaits ``result()`` (or even
before ``submit()`` returns), so an outcome is kept in a future per task id
that ``result()`` later reads. The future exists from the moment the client
decides to submit (or asks for a handle), and only a task with a future here
takes an outcome: an outcome for a task this client never submitted is not
its business. A ``TaskAccepted`` notice can say the idempotency key mapped to
an existing task: the handle then follows that task. A ``TaskRefused`` one
fails the handle at once.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from uuid import UUID

from contracts import TaskOutcome

_KEEP = 10_000  # settled outcomes no handle claimed: bounded, oldest first out
_SLACK = 1_000  # trimmed in steps of this many: a scan per _SLACK submits, not per submit


class OutcomeBook:
    def __init__(self) -> None:
        self._futures: OrderedDict[UUID, asyncio.Future[TaskOutcome]] = OrderedDict()
        self._aliases: dict[UUID, UUID] = {}
        self._trim_at = _KEEP + _SLACK

    def canonical(self, task_id: UUID) -> UUID:
        return self._aliases.get(task_id, task_id)

    def future(self, task_id: UUID) -> asyncio.Future[TaskOutcome]:
        task_id = self.canonical(task_id)
        fut = self._futures.get(task_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._futures[task_id] = fut
            self._trim()
        return fut

    def knows(self, task_id: UUID) -> bool:
        """Whether this client submitted (or holds a handle on) the task."""
        return self.canonical(task_id) in self._futures

    def resolve(self, outcome: TaskOutcome) -> bool:
        """Settle the task's handles with its outcome; False for a task this book never had."""
        fut = self._futures.get(self.canonical(outcome.task_id))
        if fut is None:
            return False
        if not fut.done():
            fut.set_result(outcome)
        return True

    def fail(self, task_id: UUID, error: BaseException) -> bool:
        """Fail the task's handles (its submit was refused); False for a task never had."""
        fut = self._futures.get(self.canonical(task_id))
        if fut is None:
            return False
        if not fut.done():
            fut.set_exception(error)
            fut.exception()  # marks it retrieved: a handle nobody awaits must not log it
        return True

    def alias(self, submitted: UUID, existing: UUID) -> None:
        """``submitted`` turned out to be a duplicate of ``existing``: wait for that one."""
        if submitted == existing:
            return
        self._aliases[submitted] = existing
        mine = self._futures.pop(submitted, None)
        theirs = self.future(existing)
        if mine is not None and not mine.done():
            # the handle holds its own future: settle it when the existing task's outcome comes
            theirs.add_done_callback(lambda f: _settle(mine, f))

    def _trim(self) -> None:
        # handles hold their own future, so forgetting a settled one only loses it for
        # a later client.handle(task_id); pending ones stay. It trims once the book is
        # _SLACK over, oldest first, and stops as soon as it is back to _KEEP: each call
        # used to scan every future, which made a long run's submits slower and slower
        if len(self._futures) <= self._trim_at:
            return
        excess = len(self._futures) - _KEEP
        settled: list[UUID] = []
        for task_id, fut in self._futures.items():
            if fut.done():
                settled.append(task_id)
                if len(settled) == excess:
                    break
        for task_id in settled:
            del self._futures[task_id]
        # look again once _SLACK more have come (if pending ones fill it, above them)
        self._trim_at = max(_KEEP, len(self._futures)) + _SLACK


def _settle(target: asyncio.Future[TaskOutcome], source: asyncio.Future[TaskOutcome]) -> None:
    if target.done() or source.cancelled():
        return
    error = source.exception()
    if error is not None:
        target.set_exception(error)
        target.exception()
    else:
        target.set_result(source.result())
