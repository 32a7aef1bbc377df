"""Registry wiring: its queue (single active consumer), router, consumer and sweeper.

Shard ``k`` of ``n`` consumes its own queue (``Topology.registry_queue(k, n)``); replicas
of one shard are its standbys. Shard 0 also declares, at start, every other shard's queue
(an agent of a shard that is not up yet is queued for it, not refused as unroutable), and
unbinds the queues of shards a larger count ran and this one does not (broker/forward.py),
so no slot is copied to a queue nobody reads.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from broker.consumer import Consumer
from broker.declare import declare_for_others
from broker.forward import unbind_left_queues
from broker.identity import worker_authorizer
from broker.router import Router
from contracts import DeregisterAgent, Heartbeat, RegisterAgent
from workers.registry.handlers import WORKER, Registry
from workers.registry.shards import Forwarder, Shard, left_queues
from workers.runtime.context import ServiceContext

log = structlog.get_logger(__name__)

# A heartbeat is handled in memory in microseconds, so the registry's rate is bounded by how
# many deliveries may wait for their ack round trip: 10,000 agents beat 2,000 times a second.
HEARTBEAT_PREFETCH = 512


class RegistryService:
    name = WORKER

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.shard = Shard.of(ctx.settings)
        self.forwarder = Forwarder(self.shard, ctx.publisher, ctx.conn.topology)
        self.registry = Registry(
            ctx.store, ctx.clock, ctx.settings, replica=ctx.replica, forward=self.forwarder
        )
        self.registry.broker_up = ctx.conn.is_up
        router = Router()
        router.add(RegisterAgent, self.registry.on_register)
        router.add(DeregisterAgent, self.registry.on_deregister)
        router.add(Heartbeat, self.registry.on_heartbeat)
        spec = ctx.conn.topology.registry_queue(self.shard.index, self.shard.count)
        self.consumer = Consumer(
            ctx.conn,
            spec,
            router,
            ctx.publisher,
            worker=WORKER,
            replica=ctx.replica,
            authorize=worker_authorizer(ctx.publisher.user_id),
            prefetch=max(ctx.conn.settings.prefetch, HEARTBEAT_PREFETCH),
        )
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.registry.load_present()
        await self.consumer.start()
        if self.shard.index == 0:
            await self._arrange_shards()
        log.info("registry.shard", shard=self.shard.label, queue=self.consumer.spec.name)
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

    async def _arrange_shards(self) -> None:
        conn, count = self.ctx.conn, self.shard.count
        for k in range(1, count):
            await declare_for_others(conn, conn.topology.registry_queue(k, count))
        left = await unbind_left_queues(conn, left_queues(conn.topology, count))
        if left:  # unbound: nothing more arrives; what they hold, and the queues, are the
            # operator's to move or delete (docs/operations.md)
            log.warning("registry.left_queues", queues=left)

    async def _sweep_forever(self) -> None:
        interval = self.ctx.settings.sweep_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.registry.sweep()
            except Exception:  # a store hiccup must not kill the sweeper; next round retries
                log.exception("registry.sweep_failed")
