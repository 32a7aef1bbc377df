"""Allocator wiring: one queue (single active consumer) for its commands and the events it follows.

Bound to ``allocator.#`` commands and to the task, agent and resource events
that change what can be placed — so one process sees the whole picture, in one
batch handler. Heartbeats are the registry's alone: agents renew direct leases
with ``RenewLease``, and liveness reaches the allocator as agent events.
"""

from __future__ import annotations

from broker.consumer import Consumer
from broker.identity import worker_authorizer
from broker.router import Router
from broker.topology import ALLOCATOR_TASK_EVENTS
from contracts import Event, lookup
from workers.allocator.handlers import WORKER, Allocator
from workers.runtime.context import ServiceContext


def _is_event(type_name: str) -> bool:
    found = lookup(type_name)
    return found is not None and issubclass(found, Event)


# what on_batch takes; any other type in the queue is dead-lettered unknown_type
HANDLED = (
    *ALLOCATOR_TASK_EVENTS,
    *("DeclareResource", "AcquireLease", "RenewLease", "ReleaseLease"),
    *("AgentJoined", "AgentUpdated", "AgentDraining", "AgentLeft", "AgentLost"),
    *("ResourceDeclared", "LeaseRequested", "LeaseGranted", "LeaseReleased", "LeaseExpired"),
)


# events are wake-ups: the allocator reads them from the store, so the consumer decodes none
WAKE_UPS = tuple(name for name in HANDLED if _is_event(name))


class AllocatorService:
    name = WORKER

    def __init__(self, ctx: ServiceContext) -> None:
        self.allocator = Allocator(
            ctx.store, ctx.publisher, ctx.clock, ctx.settings, replica=ctx.replica
        )
        spec = ctx.conn.topology.allocator_queue()
        self.consumer = Consumer(
            ctx.conn,
            spec,
            Router(),
            ctx.publisher,
            worker=WORKER,
            replica=ctx.replica,
            batch_handler=self.allocator.on_batch,
            batch_types=HANDLED,
            wake_types=WAKE_UPS,
            on_wake=self.allocator.on_wake,
            authorize=worker_authorizer(ctx.publisher.user_id),
        )

    async def start(self) -> None:
        await self.allocator.start()  # the view (snapshot + tail) before the first delivery
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.allocator.stop()
