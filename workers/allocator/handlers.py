"""The allocator's batch handler: catch up from the store, decide over the batch, append once.

The store is the truth; broker events are wake-up calls. Each batch first
reads the history past its cursor (positions are gapless and in commit order,
so ``read_all(position)`` misses nothing and the projection never needs gap
detection), then applies the batch's commands, hands back the work of agents
that are gone, settles leases and places tasks — each step one atomic
``append_many`` guarded by the expected versions of every stream it touches.
A conflict means someone else moved a stream: catch up and decide again.

Only one replica places at a time: the queue has a single active consumer,
and before deciding the allocator also holds the store lease ``allocator``,
so two replicas that both think they are active (a connection blip) cannot
both fill the same agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import structlog

from broker.errors import PublishFailed, Reject, Retry
from broker.publisher import Publisher
from broker.router import Incoming
from contracts import (
    AcquireLease,
    DeclareResource,
    Event,
    ReleaseLease,
    RenewLease,
    TaskAssigned,
)
from contracts.errors import ContractError
from workers.allocator.planning import (
    LeaseCommand,
    Plan,
    grant_waiters,
    next_wakeup,
    on_commands,
    orphaned,
    overdue,
    place,
    settle_leases,
)
from workers.allocator.projection import Projection
from workers.runtime.clock import Clock
from workers.runtime.messages import Effect, load_event, new_event, outbox_messages
from workers.runtime.metrics import PlacementMetrics
from workers.runtime.settings import WorkerSettings
from workers.store.base import AppendResult, EventStore, Metadata, StreamAppend
from workers.store.errors import ConcurrencyError
from workers.tasks import placement
from workers.tasks.state import Task, evolve

log = structlog.get_logger(__name__)

WORKER = "allocator"
LEASE = "allocator"
LEASE_TTL_S = 5.0
PAGE = 1000
ROUNDS = 8  # decide-again rounds on conflicts before the batch goes back to the broker
COMMANDS = (DeclareResource, AcquireLease, RenewLease, ReleaseLease)
# how a task that must end is decided, from its fresh state and when it was last assigned
Ending = Callable[[Task, datetime | None], list[Event]]


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
        self.active = False
        self._lock = asyncio.Lock()
        self._lease_until = 0.0
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._wake_at: datetime | None = None
        # when something (an assignment, a pending task, a lease) next runs out of time, as of
        # the last decision: before then no open task can be overdue, so none is looked for
        self._due: datetime | None = None
        self._due_known = False

    # ---- entry points ----
    async def on_batch(self, batch: Sequence[Incoming[Any]]) -> Mapping[int, BaseException]:
        """Decide over the batch; answers the items that failed, each alone (index -> error)."""
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
            await self._end_tasks(self._gone_or_overdue(now))
            placed = await self._rounds("placement", lambda plan: self._settle_and_place(now, plan))
            for task_id, why in placed.waits:
                log.debug("allocator.waiting", task_id=str(task_id), why=why)
            if placed.undeliverable:
                undeliverable = placed.undeliverable
                await self._end_tasks(
                    [(t, _undeliverable(why), "undeliverable") for t, why in undeliverable]
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
        applied = 0
        while True:
            page = await self.store.read_all(self.view.position, PAGE)
            for record in page:
                self.view.apply(record)
                self.placement_metrics.saw(record)
            applied += len(page)
            if len(page) < PAGE:
                return applied

    async def _rounds(self, what: str, decide: Callable[[Plan], None]) -> Plan:
        """Plan → append; on a conflict catch up and plan again. Answers the plan appended."""
        for _ in range(ROUNDS):
            plan = Plan()
            decide(plan)
            await self._publish_direct(plan.direct)
            if plan.empty:
                return plan
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
        for record in events:
            self.view.apply(record)
            self.placement_metrics.saw(record)
        return True

    def _meta(self) -> Metadata:
        return Metadata(message_id=str(uuid.uuid4()), worker=WORKER, replica=self.replica)

    # ---- tasks that end or fail here, by the task manager's rules ----
    def _gone_or_overdue(self, now: datetime) -> list[tuple[UUID, Ending, str]]:
        """Tasks of agents that are gone, assignments never started, tasks pending too long."""
        out: list[tuple[UUID, Ending, str]] = [
            (task_id, _agent_gone(agent_id, why), "handed_back")
            for task_id, agent_id, why in orphaned(self.view)
        ]
        if self._due_known and (self._due is None or self._due > now):
            return out
        not_started, expired = overdue(self.view, now)
        aside = {t for t, until in self.view.set_aside.items() if until > now}
        not_started = [t for t in not_started if t not in aside]
        expired = [(t, why) for t, why in expired if t not in aside]
        out += [(task_id, _not_started(now), "not_started") for task_id in not_started]
        out += [
            (task_id, _pending_expired(now, why), "pending_expired") for task_id, why in expired
        ]
        return out

    async def _end_tasks(self, decisions: list[tuple[UUID, Ending, str]]) -> None:
        """Each from its fresh stream, appended alone: one that cannot be ended stays aside."""
        changed = False
        for task_id, decide, what in decisions:
            try:
                changed |= await self._end_task(task_id, decide, what)
            except (ContractError, ValueError, TypeError) as exc:  # this task's own problem
                log.warning(
                    "allocator.end_failed", task_id=str(task_id), what=what, error=repr(exc)
                )
                self.view.set_aside[task_id] = self.clock.now() + timedelta(seconds=5)
        if changed:
            await self.catch_up()

    async def _end_task(self, task_id: UUID, decide: Ending, what: str) -> bool:
        stream = placement.stream_of(task_id)
        for _ in range(ROUNDS):
            task, assigned_at = Task(task_id), None
            for record in await self.store.read(stream):
                event = load_event(record)
                task = evolve(task, event)
                if isinstance(event, TaskAssigned):
                    assigned_at = record.recorded_at
            events = decide(task, assigned_at)
            if not events:
                return False
            outbox = outbox_messages(placement.effects_of(task, events), sender=WORKER)
            try:
                await self.store.append(
                    stream,
                    task.version,
                    [new_event(e) for e in events],
                    metadata=self._meta(),
                    outbox=outbox,
                    cancel_timers_of=placement.cancels_of(task, events),
                )
            except ConcurrencyError:
                continue
            log.info(
                f"allocator.{what}", task_id=str(task_id), events=[e.type_name() for e in events]
            )
            return True
        return False

    async def _hold_lease(self) -> None:
        acquire = getattr(self.store, "acquire_lease", None)
        if acquire is None:
            return  # a store without leases (a test double): rely on single active consumer
        loop = asyncio.get_running_loop()
        if loop.time() < self._lease_until - LEASE_TTL_S * 2 / 3:
            return
        if not await acquire(LEASE, self.owner, LEASE_TTL_S):
            self.active = False
            raise Retry("another allocator replica holds the placement lease", after=1.0)
        self._lease_until = loop.time() + LEASE_TTL_S

    async def release(self) -> None:
        release = getattr(self.store, "release_lease", None)
        if release is not None and self.active:
            with contextlib.suppress(Exception):
                await release(LEASE, self.owner)

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


def _agent_gone(agent_id: str, why: str) -> Ending:
    return lambda task, _: placement.decide_agent_gone(task, agent_id, why)


def _not_started(now: datetime) -> Ending:
    return lambda task, at: [] if at is None else placement.decide_not_started(task, at, now)


def _pending_expired(now: datetime, why: str) -> Ending:
    return lambda task, _: placement.decide_pending_expired(task, now, why)


def _undeliverable(why: str) -> Ending:
    return lambda task, _: placement.decide_undeliverable(task, why)
