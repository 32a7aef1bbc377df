"""Task manager wiring: its queue (competing consumers), router and consumer."""

from __future__ import annotations

from broker.consumer import Consumer
from broker.identity import worker_authorizer
from workers.runtime.context import ServiceContext
from workers.tasks.handlers import WORKER, TaskManager


class TasksService:
    name = WORKER

    def __init__(self, ctx: ServiceContext) -> None:
        self.manager = TaskManager(
            ctx.store, ctx.publisher, ctx.clock, ctx.settings, replica=ctx.replica
        )
        spec = ctx.conn.topology.work_queue(WORKER)
        self.consumer = Consumer(
            ctx.conn,
            spec,
            self.manager.router(),
            ctx.publisher,
            worker=WORKER,
            replica=ctx.replica,
            authorize=worker_authorizer(ctx.publisher.user_id),
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
