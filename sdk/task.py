"""The one parameter a capability handler receives: the task, and what it can do while running.

One model parameter, so fields can be added later without breaking handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sdk.lease import Lease, LeaseContext

if TYPE_CHECKING:
    from sdk.lease import LeaseBook

ProgressSink = Callable[[float, "str | None"], None]


@dataclass(eq=False)
class Task:
    id: UUID
    capability: str
    payload: Any  # the submitted JSON; Any so handlers can index it without casts
    attempt: int
    fencing_token: int
    timeout_s: float
    agent_id: str
    leases: tuple[Lease, ...] = ()  # leases the allocator granted with the assignment
    _progress: ProgressSink | None = field(default=None, repr=False)
    _book: LeaseBook | None = field(default=None, repr=False)

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far along the task is (0..1). Returns at once; delivery is reliable."""
        if self._progress is not None:
            self._progress(min(1.0, max(0.0, float(fraction))), message)

    def lease(
        self, resource: str, *, ttl_s: float = 30.0, timeout: float | None = None
    ) -> LeaseContext:
        """``async with task.lease("gpu") as lease:`` — held, renewed, released on exit."""
        if self._book is None:
            raise RuntimeError("this task has no agent to ask for leases")
        return LeaseContext(self._book, resource, ttl_s, timeout)


Handler = Callable[[Task], Awaitable[Any]]  # returns a JSON-serializable result
