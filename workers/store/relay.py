"""The outbox relay: committed outbox rows to the broker, at least once, in order per stream.

Every append writes, in the same transaction as the events, one outbox row per
event plus the side-effect messages (assignments, notices, timers). A row is
deleted only after the broker confirmed it, so a crash anywhere loses nothing.

Two paths publish rows:

- **Fast path** (low latency, every replica). A store with a relay attached
  writes its rows *claimed by this relay until now + claim_seconds* and, right
  after commit, hands the relay the rows themselves (built from the values it
  wrote: no read-back, no decoding). The relay publishes them, waits for the
  confirms and deletes the rows — no other store call. If it gets to rows
  later than half their claim (a stalled loop), the claim may be about to run
  out and the sweeper to take them: those go the old way, ``outbox_take_own``,
  which renews the claim only if it is still ours.
- **Sweeper** (recovery and timers, one leader). Whoever holds the ``outbox``
  lease — a row with owner and expiry, renewed every third of its TTL and
  taken over only once expired — polls (default every 50 ms, one indexed
  query when idle) for rows whose claim expired (their writer crashed between
  commit and publish, or gave them up), rows released after a failed publish,
  rows written by a store with no relay, and timers whose ``not_before`` has
  come. It claims them the same way and publishes them in id order.

Claims make the two paths exclusive: taking a row is a conditional update
(still mine and unexpired / expired or unclaimed), so two relays never both
publish a row unless one stalls past its claim. Then, and after a crash
between confirm and delete, a row goes out twice with the same message id
(the event id for events): subscribers dedupe on it.

Order per stream: ids grow in commit order (the stores assign them under
their append lock). A relay publishes an event row only after every lower
row of its stream is out. For the fast path the append transaction checks
it, looking at the stream's pending rows (all lower than its own):

- one is not this relay's (another replica's, the sweeper's, released after
  a failure, written with no relay): the append writes its rows of the
  stream unclaimed and does not hand them over. The sweeper, which takes
  each stream from its oldest pending row (``ordering.first_in_line``),
  publishes them in order.
- all are this relay's (handed, not confirmed yet): the rows are handed over
  chained to the newest of them (``Handoff.after``). The relay publishes its
  handed rows in order and remembers, per stream, the last one it published
  and deleted; a row goes out directly only if its predecessor is that one
  or goes out ahead of it in the same batch. Otherwise (its predecessor
  failed, went late, or was handed after it) ``outbox_take_own`` decides,
  holding it back for the sweeper while a lower row is pending.

Rows without a stream (side-effect messages, timers) are not held back.

Cancelled timers: an append with ``cancel_timers_of`` deletes the stream's timers in
its transaction and tells the relay their ids (``Handoff.cancelled``). The relay drops
them from its handed rows and remembers them a while, so a batch claimed just before
(by either path) does not publish them either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from workers.store.base import Handoff, OutboxRow, OutboxStore, OutgoingRecord, RecordedEvent
from workers.store.errors import StoreError

log = structlog.get_logger(__name__)

# How many streams' last published row the fast path remembers (see Relay._sent).
_SENT_STREAMS = 10_000
# How many cancelled timers' ids the relay remembers (see Relay._cancelled): enough for
# the ones cancelled while a batch is on its way from its claim to the broker.
_CANCELLED_IDS = 10_000

EncodeEvent = Callable[[RecordedEvent], OutgoingRecord]


class OutboxPublisher(Protocol):
    async def publish_outbox(self, messages: Sequence[OutgoingRecord]) -> None:
        """Publish all, in order, wait for every confirm; raise if any failed."""
        ...


@dataclass(slots=True)
class RelayCounts:
    """Rows published, by path: handed and sent as is (``fast``), handed but sent through
    ``outbox_take_own`` (``taken``: reached late, or their predecessor not known to be
    out), swept."""

    fast: int = 0
    taken: int = 0
    swept: int = 0


class Relay:
    def __init__(
        self,
        store: OutboxStore,
        publisher: OutboxPublisher,
        encode_event: EncodeEvent,
        *,
        replica: str | None = None,
        lease_name: str = "outbox",
        sweep_interval: float = 0.05,
        claim_seconds: float = 10.0,
        lease_seconds: float = 5.0,
        retry_delay: float = 1.0,
        batch_size: int = 500,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.encode_event = encode_event
        replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self.owner = f"{replica}:{uuid.uuid4().hex[:8]}"
        self.sweeper_owner = f"{self.owner}/sweep"  # distinct: its claims are not the fast path's
        self.lease_name = lease_name
        self.sweep_interval = sweep_interval
        self.claim_seconds = claim_seconds
        self.lease_seconds = lease_seconds
        self.retry_delay = retry_delay
        self.batch_size = batch_size
        self.leader = False
        self.counts = RelayCounts()
        # Handed rows not yet published: (row, the monotonic time after which it must go
        # through take_own (half its claim gone), the row of its stream it must follow).
        self._pending: list[tuple[OutboxRow, float, int | None]] = []
        # Per stream, the last row the fast path published and deleted (most recent
        # streams only: a forgotten one costs a take_own, nothing worse).
        self._sent: OrderedDict[str, int] = OrderedDict()
        # Ids of timers cancelled lately, oldest first: never published from here on.
        self._cancelled: OrderedDict[int, None] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._fast_lock = asyncio.Lock()
        self._sweep_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stopped = asyncio.Event()
        self._log = log.bind(relay=self.owner)

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._stopped.clear()
        self.store.attach_relay(self.owner, self.claim_seconds, self._on_commit)
        self._tasks = [
            asyncio.create_task(self._fast_loop(), name=f"relay-fast-{self.owner}"),
            asyncio.create_task(self._sweep_loop(), name=f"relay-sweep-{self.owner}"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._report_crash)

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        # A loop only ends on stop; anything else is a bug that must not go unseen.
        if not task.cancelled() and task.exception() is not None:
            self._log.error("relay.loop_crashed", task=task.get_name(), exc_info=task.exception())

    async def stop(self, timeout: float = 5.0) -> None:
        """Publish what this replica committed, then stop; hand the lease on at once."""
        if self._tasks:
            self.store.detach_relay()
        self._stopping = True
        self._stopped.set()
        self._wakeup.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(StoreError):
            if self._pending:  # not published: let the sweeper have them now
                await self.store.outbox_release([row.id for row, _, _ in self._pending], 0.0)
                self._pending.clear()
            if self.leader:
                await self.store.release_lease(self.lease_name, self.sweeper_owner)
        self.leader = False

    async def flush(self) -> int:
        """Publish everything due now (own rows, then a full sweep if the lease is free)."""
        published = await self._drain_own()
        async with self._sweep_lock:
            self.leader = await self.store.acquire_lease(
                self.lease_name, self.sweeper_owner, self.lease_seconds
            )
        if self.leader:
            while (n := await self.sweep_once()) > 0:
                published += n
            if not self._tasks:  # not running: do not sit on the lease
                await self.store.release_lease(self.lease_name, self.sweeper_owner)
                self.leader = False
        return published

    # -- fast path --------------------------------------------------------------------

    def _on_commit(self, handoff: Handoff) -> None:
        if handoff.cancelled:
            self._cancel(handoff.cancelled)
        deadline = handoff.claimed_at + self.claim_seconds / 2
        previous = dict(handoff.after)
        for row in sorted(handoff.rows, key=_id):
            after = None
            if row.stream is not None:  # each row follows the one before it in its stream
                after = previous.get(row.stream)
                previous[row.stream] = row.id
            self._pending.append((row, deadline, after))
        self._wakeup.set()

    def _cancel(self, ids: Sequence[int]) -> None:
        gone = set(ids)
        self._pending = [p for p in self._pending if p[0].id not in gone]
        for row_id in ids:
            self._cancelled[row_id] = None
        while len(self._cancelled) > _CANCELLED_IDS:
            self._cancelled.popitem(last=False)

    async def _fast_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._drain_own()
            if self._stopping:
                return

    async def _drain_own(self) -> int:
        published = 0
        async with self._fast_lock:
            while self._pending:
                batch = sorted(self._pending[: self.batch_size], key=lambda p: p[0].id)
                del self._pending[: self.batch_size]
                fresh, check = self._vouch(batch)
                checked = await self._take_own(check)
                # In a stream, checked rows only follow fresh ones (a checked row's successors
                # are checked too), and take_own holds them back behind the fresh ones, still
                # pending: publishing both together in id order keeps each stream's order.
                rows = sorted([*fresh, *checked], key=_id)
                n, forgotten = await self._publish(rows)
                published += n
                self.counts.fast += len(fresh) if n else 0
                self.counts.taken += len(checked) if n else 0
                if forgotten:
                    self._remember(rows)
        return published

    def _vouch(
        self, batch: Sequence[tuple[OutboxRow, float, int | None]]
    ) -> tuple[list[OutboxRow], list[int]]:
        """Split a batch (in id order) into rows to publish as they are and ids to check."""
        now = time.monotonic()
        fresh: list[OutboxRow] = []
        check: list[int] = []
        going: dict[str, int] = {}  # per stream, the last fresh row of this batch
        for row, deadline, after in batch:
            stream = row.stream
            if now >= deadline:  # the claim may run out soon: only the store can tell
                check.append(row.id)
            elif stream is None:
                fresh.append(row)
            elif after is None or after == going.get(stream, self._sent.get(stream)):
                fresh.append(row)
                going[stream] = row.id
            else:  # its predecessor is not known to be out
                check.append(row.id)
        return fresh, check

    def _remember(self, rows: Sequence[OutboxRow]) -> None:
        for row in rows:  # in id order: the last of each stream stays
            if row.stream is not None:
                self._sent[row.stream] = row.id
                self._sent.move_to_end(row.stream)  # recent streams last, the oldest out first
        while len(self._sent) > _SENT_STREAMS:
            # (as broker/tracing.py's recent hops: a plain dict's first key is found by
            # skipping the holes earlier deletions left at its front)
            self._sent.popitem(last=False)

    async def _take_own(self, ids: Sequence[int]) -> list[OutboxRow]:
        """The store's check of handed rows we cannot vouch for (reached late, or their
        predecessor not known to be out): those still ours and first in line, renewed."""
        if not ids:
            return []
        try:
            return await self.store.outbox_take_own(self.owner, ids, self.claim_seconds)
        except StoreError as exc:
            # The rows stay claimed by us until the claim expires; then the sweeper.
            self._log.warning("relay.take_failed", rows=len(ids), error=str(exc))
            return []

    # -- sweeper ----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        renew_at = 0.0
        while not self._stopping:
            busy = False
            try:
                if time.monotonic() >= renew_at:
                    was = self.leader
                    self.leader = await self.store.acquire_lease(
                        self.lease_name, self.sweeper_owner, self.lease_seconds
                    )
                    renew_at = time.monotonic() + self.lease_seconds / 3
                    if self.leader != was:
                        self._log.info("relay.leadership", leader=self.leader)
                if self.leader:
                    busy = await self.sweep_once() >= self.batch_size
            except StoreError as exc:
                self._log.warning("relay.sweep_failed", error=str(exc))
                self.leader = False
                renew_at = 0.0
            if not busy:  # a full batch means a backlog: go again at once
                await self._pause(self.sweep_interval if self.leader else self.lease_seconds / 3)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stopped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopped.wait()

    async def sweep_once(self) -> int:
        """Claim and publish one batch of due rows; the number published."""
        async with self._sweep_lock:
            rows = await self.store.outbox_claim_due(
                self.sweeper_owner, self.batch_size, self.claim_seconds
            )
            if rows:
                self._log.info("relay.sweep", rows=len(rows))
            published, _ = await self._publish(rows)
            self.counts.swept += published
            return published

    # -- publishing -------------------------------------------------------------------

    async def _publish(self, rows: Sequence[OutboxRow]) -> tuple[int, bool]:
        """Publish and delete ``rows``: (how many went out, whether they were deleted)."""
        if self._cancelled:  # deleted with the append that cancelled them: nothing to do
            rows = [r for r in rows if r.id not in self._cancelled]
        if not rows:
            return 0, False
        ids = [r.id for r in rows]
        try:
            records = [self._record(r) for r in rows]
            await self.publisher.publish_outbox(records)
        except Exception as exc:
            # Nothing is dropped: the rows go back to the sweeper, which retries later and
            # meanwhile holds back the rest of their streams.
            self._log.warning("relay.publish_failed", rows=len(rows), error=repr(exc))
            with contextlib.suppress(StoreError):
                await self.store.outbox_release(ids, self.retry_delay)
            return 0, False
        try:
            await self.store.outbox_done(ids)
        except StoreError as exc:
            # Published but not forgotten: they will go out again (same message ids).
            self._log.warning("relay.done_failed", rows=len(ids), error=str(exc))
            return len(rows), False
        return len(rows), True

    def _record(self, row: OutboxRow) -> OutgoingRecord:
        if row.event is not None:
            return self.encode_event(row.event)
        if row.message is None:
            raise StoreError(f"outbox row {row.id} has neither an event nor a message")
        return row.message


def _id(row: OutboxRow) -> int:
    return row.id
