"""Registry wiring: its queue (single active consumer), router, consumer and sweeper."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from broker.consumer import Consumer
from broker.identity import worker_authorizer
from broker.router import Router
from contracts import DeregisterAgent, Heartbeat, RegisterAgent
from workers.registry.handlers import WORKER, Registry
from workers.runtime.context import ServiceContext

log = structlog.get_logger(__name__)


class RegistryService:
    name = WORKER

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.registry = Registry(ctx.store, ctx.clock, ctx.settings, replica=ctx.replica)
        self.registry.broker_up = ctx.conn.is_up
        router = Router()
        router.add(RegisterAgent, self.registry.on_register)
        router.add(DeregisterAgent, self.registry.on_deregister)
        router.add(Heartbeat, self.registry.on_heartbeat)
        spec = ctx.conn.topology.work_queue(WORKER, single_active=True)
        self.consumer = Consumer(
            ctx.conn,
            spec,
            router,
            ctx.publisher,
            worker=WORKER,
            replica=ctx.replica,
            authorize=worker_authorizer(ctx.publisher.user_id),
        )
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.registry.load_present()
        await self.consumer.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="registry-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.consumer.stop()
        try:
            await self.registry.stop()
        except Exception:  # the periodic snapshot stands; the next start reads a longer tail
            log.exception("registry.snapshot_failed")

    async def _sweep_forever(self) -> None:
        interval = self.ctx.settings.sweep_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.registry.sweep()
            except Exception:  # a store hiccup must not kill the sweeper; next round retries
                log.exception("registry.sweep_failed")
