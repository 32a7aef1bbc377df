"""The allocator's batch handler: catch up from the store, decide over the batch, append once.

The store is the truth; broker events are wake-up calls. Each batch first
reads the history past its cursor (positions are gapless and in commit order,
so ``read_all(position)`` misses nothing and the projection never needs gap
detection), then applies the batch's commands, hands back the work of agents
that are gone, settles leases and places tasks — each step one atomic
``append_many`` guarded by the expected versions of every stream it touches.
A conflict means someone else moved a stream: catch up and decide again.

Only one replica places at a time: the queue has a single active consumer,
and before deciding the allocator also holds the store lease ``allocator``
(workers/allocator/lease.py), so two replicas that both think they are active
(a connection blip) cannot both fill the same agent. The view starts from a
snapshot plus the tail, and a standby follows the store (workers/allocator/follow.py),
so a takeover reads only the last few events.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from broker.errors import PublishFailed, Reject, Retry
from broker.publisher import Publisher
from broker.router import Incoming
from contracts import AcquireLease, DeclareResource, ReleaseLease, RenewLease
from contracts.errors import ContractError
from workers.allocator import lease as placement_lease
from workers.allocator.endings import Decision, end_task, gone_or_overdue, undeliverable
from workers.allocator.follow import FOLLOW_S, ViewKeeper
from workers.allocator.planning import (
    LeaseCommand,
    Plan,
    grant_waiters,
    next_wakeup,
    on_commands,
    place,
    settle_leases,
)
from workers.allocator.projection import Projection
from workers.runtime.clock import Clock
from workers.runtime.messages import Effect, new_event, outbox_messages
from workers.runtime.metrics import PlacementMetrics
from workers.runtime.settings import WorkerSettings
from workers.store.base import AppendResult, EventStore, Metadata, StreamAppend
from workers.store.errors import ConcurrencyError

log = structlog.get_logger(__name__)

WORKER = "allocator"
ROUNDS = 8  # decide-again rounds on conflicts before the batch goes back to the broker
COMMANDS = (DeclareResource, AcquireLease, RenewLease, ReleaseLease)
# a replica the broker turned to waits this long for a dead holder's lease to run out
TAKEOVER_WAIT_S = placement_lease.TTL_S + 0.5


class Allocator:
    def __init__(
        self,
        store: EventStore,
        publisher: Publisher,
        clock: Clock,
        settings: WorkerSettings,
        *,
        replica: str,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.settings = settings
        self.replica = replica
        self.owner = f"{replica}:{uuid.uuid4().hex[:8]}"
        self.view = Projection(rejection_cooldown_s=settings.rejection_cooldown_s)
        self.placement_metrics = PlacementMetrics(replica)
        self.keeper = ViewKeeper(store, self.view, self.placement_metrics, replica=replica)
        self.lease = placement_lease.PlacementLease(store, self.owner)
        self.active = False
        self._lock = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # the store has news (an event's wake-up): decide again
        self._last_heard = 0.0  # loop time of the last delivery from the broker
        self._decider: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._wake_at: datetime | None = None
        # when something (an assignment, a pending task, a lease) next runs out of time, as of
        # the last decision: before then no open task can be overdue, so none is looked for
        self._due: datetime | None = None
        self._due_known = False

    # ---- entry points ----
    async def start(self) -> None:
        """The view from the snapshot and the tail; then follow the store, and the timer."""
        async with self._lock:
            await self.keeper.start()
        self._follower = asyncio.create_task(self._follow(), name="allocator-follow")
        self._decider = asyncio.create_task(self._decide_on_news(), name="allocator-news")
        self.start_timer()

    async def stop(self) -> None:
        """A clean stop: the snapshot as of now, and the lease let go for the next replica."""
        await self.stop_timer()
        for task in (self._follower, self._decider):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with self._lock:
            if self.active:
                with contextlib.suppress(Exception):  # the periodic one stands
                    await self.keeper.save()
            await self.release()

    async def on_batch(self, batch: Sequence[Incoming[Any]]) -> Mapping[int, BaseException]:
        """Decide over the batch; answers the items that failed, each alone (index -> error)."""
        self._last_heard = asyncio.get_running_loop().time()
        commands: list[LeaseCommand] = []
        where: list[int] = []  # the batch index of each command
        failures: dict[int, BaseException] = {}
        woken = False
        for index, incoming in enumerate(batch):
            payload = incoming.payload
            if isinstance(payload, COMMANDS):
                commands.append(payload)
                where.append(index)
            elif payload.kind == "event":
                woken = True  # a wake-up call: the store has it already, read from there
            else:
                detail = f"the allocator does not handle {payload.type_name()}"
                failures[index] = Reject(detail, reason="unknown_type")
        if not commands and not woken:
            return failures
        failed = await self.run(commands)
        failures.update({where[i]: exc for i, exc in failed.items()})
        return failures

    def on_wake(self, event_type: str) -> None:
        """An event was recorded (the consumer's wake-up, not decoded): the store has it.

        Wake-ups are acked as they come, so they coalesce: however many arrive during a
        decision, one more decision follows, and a failed one is tried again.
        """
        self._last_heard = asyncio.get_running_loop().time()
        self._changed.set()

    async def _decide_on_news(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self.run([])
            except Retry as exc:  # another replica holds the placement lease (for now)
                log.info("allocator.decision_deferred", why=exc.reason)
                self._changed.set()
                await asyncio.sleep(0.5)
            except Exception:  # the store is down or a round lost its races: try again
                log.exception("allocator.decision_failed")
                self._changed.set()
                await asyncio.sleep(0.5)

    async def tick(self) -> None:
        """Time passed (a lease expiry, a cool-down end): decide again with no new messages."""
        if self.active:
            await self.run([])

    async def run(self, commands: list[LeaseCommand]) -> dict[int, BaseException]:
        """One decision over everything known; answers the commands that failed (by index)."""
        async with self._lock:
            await self._hold_lease()
            first = not self.active
            self.active = True
            await self.catch_up()
            now = self.clock.now()
            configured: list[LeaseCommand] = []
            if first:
                self._fresh_windows(now)
                configured = self._configured()
            everything = configured + commands
            done = await self._rounds(
                "commands", lambda plan: on_commands(self.view, everything, now, plan)
            )
            failed = {
                i - len(configured): e for i, e in done.failed.items() if i >= len(configured)
            }
            look = not self._due_known or (self._due is not None and self._due <= now)
            await self._end_tasks(gone_or_overdue(self.view, now, look_for_overdue=look))
            placed = await self._rounds("placement", lambda plan: self._settle_and_place(now, plan))
            for task_id, why in placed.waits:
                log.debug("allocator.waiting", task_id=str(task_id), why=why)
            if placed.undeliverable:
                await self._end_tasks(
                    [(t, undeliverable(why), "undeliverable") for t, why in placed.undeliverable]
                )
            self._schedule(now)
            return failed

    def _settle_and_place(self, now: datetime, plan: Plan) -> None:
        plan.max_bytes = self.settings.broker.max_message_bytes
        settle_leases(self.view, now, plan)
        grant_waiters(self.view, now, plan)
        place(self.view, now, plan)

    # ---- the store ----
    async def catch_up(self) -> int:
        return await self.keeper.catch_up()

    async def _rounds(self, what: str, decide: Callable[[Plan], None]) -> Plan:
        """Plan → append; on a conflict catch up and plan again. Answers the plan appended."""
        for _ in range(ROUNDS):
            plan = Plan()
            decide(plan)
            await self._publish_direct(plan.direct)
            if plan.empty:
                return plan
            if not self.lease.valid():
                await self._hold_lease()  # the loop stalled past it: re-take it, or stop
            try:
                result = await self._append(plan)
            except ConcurrencyError as exc:
                log.info("allocator.conflict", step=what, stream=exc.stream)
                await self.catch_up()
                continue
            self.placement_metrics.placed(plan.appends)
            if not self._apply_own(result):
                await self.catch_up()
            if plan.placed:
                log.info("allocator.placed", tasks=plan.placed, pending=self._pending())
            return plan
        raise Retry(f"allocator {what}: version conflicts in {ROUNDS} rounds")

    async def _append(self, plan: Plan) -> AppendResult:
        appends = [
            StreamAppend(stream, expected, [new_event(e) for e in events])
            for stream, (expected, events) in plan.appends.items()
        ]
        outbox = plan.outbox + outbox_messages(plan.effects, sender=WORKER)
        return await self.store.append_many(appends, metadata=self._meta(), outbox=outbox)

    def _apply_own(self, result: AppendResult) -> bool:
        """Apply what we just appended, if nothing was recorded between it and the view.

        Saves reading our own events back; otherwise (someone else's events came first)
        the caller catches up from the store, which has everything in order.
        """
        events = result.events
        if not events or events[0].position != self.view.position + 1:
            return False
        if events[-1].position != events[0].position + len(events) - 1:
            return False
        self.keeper.apply(events)
        return True

    def _meta(self) -> Metadata:
        return Metadata(message_id=str(uuid.uuid4()), worker=WORKER, replica=self.replica)

    # ---- tasks that end or fail here, by the task manager's rules ----
    async def _end_tasks(self, decisions: list[Decision]) -> None:
        """Each from its fresh stream, appended alone: one that cannot be ended stays aside."""
        changed = False
        for task_id, decide, what in decisions:
            try:
                changed |= await end_task(self.store, task_id, decide, what, self._meta())
            except (ContractError, ValueError, TypeError) as exc:  # this task's own problem
                log.warning(
                    "allocator.end_failed", task_id=str(task_id), what=what, error=repr(exc)
                )
                self.view.set_aside[task_id] = self.clock.now() + timedelta(seconds=5)
        if changed:
            await self.catch_up()

    # ---- the placement lease, and following the store while standby ----
    async def _hold_lease(self) -> None:
        if self.lease.valid() and not self.lease.due():
            return
        if self.active:
            held = await self.lease.try_take()
        else:
            held = await self.lease.take(TAKEOVER_WAIT_S)
        if not held:
            self.active = False
            await self.lease.want()
            raise Retry("another allocator replica holds the placement lease", after=1.0)

    async def release(self) -> None:
        if self.active:
            self.active = False
            await self.lease.release()

    async def _follow(self) -> None:
        """Active: renew the lease, save snapshots, retry held streams. Standby: read the tail."""
        while True:
            await asyncio.sleep(placement_lease.RENEW_S if self.active else FOLLOW_S)
            try:
                if self.active:
                    await self._renew()
                elif not self._lock.locked():
                    async with self._lock:
                        if not self.active:
                            await self.keeper.catch_up()
            except Exception:  # a store hiccup: the next round tries again
                log.exception("allocator.follow_failed")

    async def _renew(self) -> None:
        if self.lease.due() and not await self.lease.try_take():
            log.warning("allocator.lease_lost", replica=self.replica)
            self.active = False
            return
        idle = asyncio.get_running_loop().time() - self._last_heard
        if idle > placement_lease.IDLE_S and await self.lease.wanted_by_another():
            log.info("allocator.lease_handed_over", replica=self.replica, idle_s=round(idle, 2))
            await self.release()
            return
        if self.keeper.snapshot_due() or self.view.held:
            async with self._lock:
                if self.keeper.snapshot_due():
                    await self.keeper.save()
                await self.keeper.retry_holds()

    # ---- odds and ends ----
    def _fresh_windows(self, now: datetime) -> None:
        """On taking over, every direct lease gets a full TTL: renewals were in memory."""
        for view in self.view.resources.values():
            for holder in view.holders.values():
                if holder.task_id is None:
                    holder.expires_at = now + timedelta(seconds=holder.ttl_s)

    def _configured(self) -> list[LeaseCommand]:
        return [
            DeclareResource(resource=name, capacity=capacity)
            for name, capacity in self.settings.resources.items()
        ]

    def _pending(self) -> int:
        return sum(1 for t in self.view.tasks.values() if t.placeable)

    async def _publish_direct(self, notices: list[Effect]) -> None:
        for effect in notices:
            try:
                await self.publisher.send(effect.payload, to=effect.to)
            except PublishFailed as exc:
                log.warning("allocator.notice_undeliverable", to=effect.to, error=str(exc))

    # ---- waking up when time, not a message, changes a decision ----
    def _schedule(self, now: datetime) -> None:
        self.view.avoid = {k: t for k, t in self.view.avoid.items() if t > now}
        self._wake_at = self._due = next_wakeup(self.view, now)
        self._due_known = True
        self._wake.set()

    def start_timer(self) -> None:
        self._timer = asyncio.create_task(self._timer_loop(), name="allocator-timer")

    async def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer

    async def _timer_loop(self) -> None:
        while True:
            self._wake.clear()
            delay = None
            if self._wake_at is not None:
                delay = max(0.0, (self._wake_at - self.clock.now()).total_seconds()) + 0.01
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
                continue  # rescheduled: compute the new delay
            except TimeoutError:
                pass
            self._wake_at = None
            try:
                await self.tick()
            except Exception:  # the next batch or tick tries again
                log.exception("allocator.tick_failed")
