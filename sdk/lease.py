"""Leases as a handler sees them: acquire, keep renewed, release, and hear when one is lost.

The allocator answers an ``AcquireLease`` with a ``LeaseAcquired`` notice in
the agent's inbox and tells a holder whose lease expired with ``LeaseLost``.
The book matches notices to waiting and held leases by lease id. A lost lease
is not yanked out from under the handler (it may be mid-write); its
:class:`Lease` says so (``lost``, ``check()``, ``wait_lost()``), and leaving
the ``async with`` block after a loss raises :class:`LeaseLostError`, so work
done without the lease is never reported as a success by accident.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from uuid import UUID, uuid4

import structlog

from contracts import AcquireLease, LeaseAcquired, LeaseLost, ReleaseLease, RenewLease
from sdk.clock import Clock
from sdk.delivery import ReliableSender
from sdk.errors import LeaseLostError, LeaseTimeout

log = structlog.get_logger(__name__)

_REMEMBERED_GRANTS = 1024


def renew_delay(ttl_s: float, expires_at: datetime | None, now: datetime) -> float:
    """Renew at a third of the TTL, sooner if the grant says it runs out earlier."""
    delay = ttl_s / 3
    if expires_at is not None:
        delay = min(delay, (expires_at - now).total_seconds() / 2)
    return max(0.05, delay)


@dataclass(eq=False)
class Lease:
    resource: str
    lease_id: UUID
    ttl_s: float
    fencing_token: int = 0
    expires_at: datetime | None = None
    lost_reason: str | None = None
    _lost: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the lease was lost: call before using the resource."""
        if self.lost:
            raise LeaseLostError(self.resource, self.lease_id, self.lost_reason or "lost")

    async def wait_lost(self) -> str:
        await self._lost.wait()
        return self.lost_reason or "lost"

    def _mark_lost(self, reason: str) -> None:
        self.lost_reason = reason
        self._lost.set()


class LeaseBook:
    def __init__(self, agent_id: str, sender: ReliableSender, clock: Clock) -> None:
        self.agent_id = agent_id
        self._sender = sender
        self._clock = clock
        self._waiting: dict[UUID, asyncio.Future[LeaseAcquired]] = {}
        self._held: dict[UUID, Lease] = {}
        self._renewers: dict[UUID, asyncio.Task[None]] = {}
        # grants for leases the allocator took on a task's behalf (AssignTask.leases)
        self._grants: OrderedDict[UUID, LeaseAcquired] = OrderedDict()
        self._abandoned: set[UUID] = set()  # asked for, stopped waiting: release if granted

    # ---- notices ----
    def on_acquired(self, notice: LeaseAcquired) -> None:
        waiter = self._waiting.pop(notice.lease_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(notice)
            return
        lease = self._held.get(notice.lease_id)
        if lease is not None:  # a renewal took: the token and expiry may move on
            lease.fencing_token, lease.expires_at = notice.fencing_token, notice.expires_at
            return
        if notice.lease_id in self._abandoned:
            self._abandoned.discard(notice.lease_id)
            self._send_release(notice.resource, notice.lease_id, notice.fencing_token)
            return
        self._grants[notice.lease_id] = notice
        while len(self._grants) > _REMEMBERED_GRANTS:
            self._grants.popitem(last=False)

    def on_lost(self, notice: LeaseLost) -> None:
        lease = self._held.get(notice.lease_id)
        if lease is not None and lease.fencing_token != notice.fencing_token:
            # the loss of a lease we do not hold (a renewal with a wrong token is answered
            # so): ours, with its own token, stays held and renewed
            log.warning(
                "sdk.lease_lost_ignored",
                resource=notice.resource,
                lease_id=str(notice.lease_id),
                token=notice.fencing_token,
                held_token=lease.fencing_token,
            )
            return
        log.warning(
            "sdk.lease_lost",
            resource=notice.resource,
            lease_id=str(notice.lease_id),
            reason=notice.reason,
        )
        waiter = self._waiting.pop(notice.lease_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(LeaseLostError(notice.resource, notice.lease_id, notice.reason))
        if lease is not None:
            del self._held[notice.lease_id]
            lease._mark_lost(notice.reason)
        self._stop_renewing(notice.lease_id)

    # ---- acquire / renew / release ----
    async def acquire(self, resource: str, ttl_s: float, timeout: float | None) -> Lease:
        lease_id = uuid4()
        waiter: asyncio.Future[LeaseAcquired] = asyncio.get_running_loop().create_future()
        self._waiting[lease_id] = waiter
        request = AcquireLease(
            resource=resource, agent_id=self.agent_id, lease_id=lease_id, ttl_s=ttl_s
        )
        try:
            await self._sender.deliver(self._sender.wrap(request))
            grant = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            # we stop waiting, but the allocator may still grant it: hand it back if it does
            self._waiting.pop(lease_id, None)
            self._abandoned.add(lease_id)
            raise LeaseTimeout(f"no lease on {resource!r} within {timeout}s") from None
        except BaseException:
            self._waiting.pop(lease_id, None)
            raise
        lease = Lease(resource, lease_id, ttl_s, grant.fencing_token, grant.expires_at)
        self.hold(lease)
        return lease

    def hold(self, lease: Lease) -> None:
        self._held[lease.lease_id] = lease
        self._renewers[lease.lease_id] = asyncio.create_task(
            self._renew(lease), name=f"renew:{lease.resource}"
        )

    def adopt(self, lease_ids: tuple[UUID, ...], ttl_s: float) -> list[Lease]:
        """Leases granted for an assignment: keep renewing those whose grant we heard."""
        adopted = []
        for lease_id in lease_ids:
            grant = self._grants.pop(lease_id, None)
            if grant is not None and lease_id not in self._held:
                lease = Lease(
                    grant.resource, lease_id, ttl_s, grant.fencing_token, grant.expires_at
                )
                self.hold(lease)
                adopted.append(lease)
        return adopted

    def drop(self, lease: Lease) -> None:
        """Stop renewing without releasing (the allocator frees task leases itself)."""
        self._held.pop(lease.lease_id, None)
        self._stop_renewing(lease.lease_id)

    def release(self, lease: Lease) -> None:
        self.drop(lease)
        if not lease.lost:
            self._send_release(lease.resource, lease.lease_id, lease.fencing_token)

    def _send_release(self, resource: str, lease_id: UUID, token: int) -> None:
        release = ReleaseLease(
            resource=resource, agent_id=self.agent_id, lease_id=lease_id, fencing_token=token
        )
        self._sender.deliver_soon(self._sender.wrap(release))

    def close(self) -> None:
        for lease_id in list(self._renewers):
            self._stop_renewing(lease_id)

    def _stop_renewing(self, lease_id: UUID) -> None:
        task = self._renewers.pop(lease_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _renew(self, lease: Lease) -> None:
        while not lease.lost:
            await self._clock.sleep(renew_delay(lease.ttl_s, lease.expires_at, self._clock.now()))
            renew = RenewLease(
                resource=lease.resource,
                agent_id=self.agent_id,
                lease_id=lease.lease_id,
                fencing_token=lease.fencing_token,
            )
            await self._sender.deliver(self._sender.wrap(renew))
            # the allocator extends by the TTL; a LeaseAcquired answer, if any, corrects this
            lease.expires_at = self._clock.now() + timedelta(seconds=lease.ttl_s)


class LeaseContext:
    """``async with task.lease("gpu") as lease:`` — acquired on entry, released on exit."""

    def __init__(self, book: LeaseBook, resource: str, ttl_s: float, timeout: float | None):
        self._book, self._resource, self._ttl_s, self._timeout = book, resource, ttl_s, timeout
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        self._lease = await self._book.acquire(self._resource, self._ttl_s, self._timeout)
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._lease is not None
        self._book.release(self._lease)
        if exc is None:
            self._lease.check()
