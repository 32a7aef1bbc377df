"""Move dead letters out of the broker into the archive: store first, ack after.

Inspecting a queue by get-and-requeue changes what it inspects (order, the
redelivered flag, delivery counts), so nobody browses the DLQs: the mover
empties them into the archive and everything else reads the archive. A
letter is acked only after the archive committed it; a crash in between
brings it back, and the archive's dedupe key (dlq, message, death time) keeps
it from being counted twice. If the archive is down nothing is acked: the
letters go back to their queue and the mover tries again after a pause.

Two ways to run it: ``start()``/``stop()`` inside the worker processes (a
consumer on every DLQ, rediscovering new ones now and then), and ``drain()``
on demand (``rally dlq list`` first moves what is waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from broker.connection import BrokerConnection
from broker.queue_reader import QueueReader, Receiver, taking
from workers.dlq.archive import ArchiveError, DeadLetterArchive
from workers.dlq.directory import DlqDirectory
from workers.dlq.parse import parse
from workers.dlq.transport import Delivery, queue_depths, settle, to_raws
from workers.runtime.clock import Clock, SystemClock

log = structlog.get_logger(__name__)

Item = tuple[str, Delivery]  # (dlq, delivery)


class DeadLetterMover:
    def __init__(
        self,
        conn: BrokerConnection,
        archive: DeadLetterArchive,
        *,
        directory: DlqDirectory | None = None,
        clock: Clock | None = None,
        batch_size: int = 100,
        linger_s: float = 0.05,
        rediscover_s: float = 30.0,
        retry_s: float = 2.0,
    ) -> None:
        self.conn = conn
        self.archive = archive
        self.directory = directory or DlqDirectory(conn.topology, archive=archive)
        self.clock = clock or SystemClock()
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.rediscover_s = rediscover_s
        self.retry_s = retry_s
        self.moved = 0  # letters newly archived by this mover
        self._reader = QueueReader(conn, prefetch=batch_size * 2)
        self._pending: asyncio.Queue[Item] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- running in a worker ----
    async def start(self) -> DeadLetterMover:
        """Consume every DLQ there is now; look for new ones every ``rediscover_s``."""
        await self._reader.open()
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="dlq-mover:flush"),
        ]
        await self.discover()
        self._tasks.append(asyncio.create_task(self._discover_loop(), name="dlq-mover:discover"))
        log.info("dlq.mover.started", queues=self._reader.following)
        return self

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking letters, store those in hand, then close (unacked ones are requeued)."""
        for dlq in self._reader.following:
            await self._reader.unfollow(dlq)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wait_flushed(), timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._reader.close()
        log.info("dlq.mover.stopped", moved=self.moved)

    async def discover(self) -> list[str]:
        """Start consuming DLQs that exist and are not consumed yet; return the new ones."""
        names = await self.directory.candidates()
        following = set(self._reader.following)
        existing = await queue_depths(self.conn, [n for n in names if n not in following])
        for dlq in existing:
            await self._reader.follow(dlq, self._receiver(dlq))
        return list(existing)

    @property
    def queues(self) -> list[str]:
        return self._reader.following

    def _receiver(self, dlq: str) -> Receiver:
        async def receive(delivery: Delivery) -> None:
            await self._pending.put((dlq, delivery))

        return receive

    async def _discover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.rediscover_s)
            try:
                await self.discover()
            except Exception as exc:  # the broker or the store is away: try again later
                log.warning("dlq.mover.discover_failed", error=str(exc))

    async def _flush_loop(self) -> None:
        while True:
            batch = [await self._pending.get()]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.linger_s
            while len(batch) < self.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._pending.get(), remaining))
                except TimeoutError:
                    break
            try:
                stored = await self._store(batch)
            except Exception:  # a bug must not kill the loop and strand unacked letters
                log.exception("dlq.mover.store_crashed", letters=len(batch))
                await settle([d for _, d in batch], stored=False)
                stored = False
            if not stored:
                await asyncio.sleep(self.retry_s)
            for _ in batch:
                self._pending.task_done()

    async def _wait_flushed(self) -> None:
        await self._pending.join()

    # ---- on demand ----
    async def drain(self) -> int:
        """Move everything waiting in the DLQs now; return how many were new to the archive.

        Takes at most what each queue held when it started (so a queue that fills
        as fast as it drains cannot keep it busy forever). Raises
        :class:`ArchiveError` if the archive refused a batch (which stays queued).
        """
        names = await self.directory.candidates()
        depths = await queue_depths(self.conn, names)
        before = self.moved
        for dlq, depth in depths.items():
            if depth:
                await self._drain_queue(dlq, depth)
        return self.moved - before

    async def _drain_queue(self, dlq: str, depth: int) -> None:
        async with taking(self.conn, dlq) as taker:
            taken = 0
            while taken < depth:
                batch: list[Item] = []
                while len(batch) < self.batch_size and taken < depth:
                    delivery = await taker.take()
                    if delivery is None:
                        depth = taken  # emptied by someone else (a running mover)
                        break
                    batch.append((dlq, delivery))
                    taken += 1
                if batch:
                    await self._store(batch, reraise=True)

    # ---- both ----
    async def _store(self, batch: Sequence[Item], *, reraise: bool = False) -> bool:
        """Archive, then ack; on an archive error nothing is acked (False, or raised)."""
        now = self.clock.now()
        limit = self.conn.settings.delivery_limit
        letters = [
            parse(raw, now=now, delivery_limit=limit) for dlq, d in batch for raw in to_raws(dlq, d)
        ]
        deliveries = [d for _, d in batch]
        try:
            added = await self.archive.add(letters)
        except ArchiveError as exc:
            log.error("dlq.archive_failed", letters=len(letters), error=str(exc))
            await settle(deliveries, stored=False)
            if reraise:
                raise
            return False
        self.moved += added
        for letter in letters:
            log.info(
                "dlq.archived",
                dead_letter_id=letter.id,
                message_id=letter.message_id,
                queue=letter.queue,
                reason=letter.reason,
            )
        await settle(deliveries, stored=True)
        return True
