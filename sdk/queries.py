"""Questions to the task manager and their answers, matched by the question's message id.

A ``QueryTask`` is answered by a ``TaskView`` in this client's inbox whose
``causation_id`` is the query's id. The waiter exists before the query leaves,
so even an answer that beats the publish confirm finds it.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from contracts import TaskView


class QueryBook:
    def __init__(self) -> None:
        self._waiting: dict[UUID, asyncio.Future[TaskView]] = {}

    def expect(self, query_id: UUID) -> asyncio.Future[TaskView]:
        fut: asyncio.Future[TaskView] = asyncio.get_running_loop().create_future()
        self._waiting[query_id] = fut
        return fut

    def forget(self, query_id: UUID) -> None:
        self._waiting.pop(query_id, None)

    def answer(self, query_id: UUID | None, view: TaskView) -> bool:
        """Hand the answer to its waiter; False when nobody asked (or stopped waiting)."""
        fut = self._waiting.pop(query_id, None) if query_id is not None else None
        if fut is None or fut.done() or fut.cancelled():
            return False
        fut.set_result(view)
        return True
