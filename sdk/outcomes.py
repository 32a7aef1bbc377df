"""Outcomes matched to the handles waiting for them, including those that arrive first.

The task manager may answer before the caller awaits ``result()`` (or even
before ``submit()`` returns), so an outcome is kept in a future per task id
that ``result()`` later reads. A ``TaskAccepted`` notice can say the
idempotency key mapped to an existing task: the handle then follows that task.
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

    def resolve(self, outcome: TaskOutcome) -> None:
        fut = self.future(outcome.task_id)
        if not fut.done():
            fut.set_result(outcome)

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
    if not target.done() and not source.cancelled():
        target.set_result(source.result())
