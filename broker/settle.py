"""Settling a message the handler could not finish: park it in a delay tier, or dead-letter it.

A retried copy goes to the delay queue that fits its back-off, with its attempt count; a
delay longer than the largest tier hops tiers, carrying ``x-rally-due-at``. Every due-at is
bounded: no back-off is longer than the retry horizon (``retry_max_s``, at least the largest
tier), and a copy that would stay parked past it is dead-lettered (reason
``retry_horizon``), so nothing circles the delay queues for ever.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from broker import headers as h
from broker.connection import BrokerConnection
from broker.deadletter import dead_letter_headers
from broker.delivery import Delivery, int_header
from broker.errors import Reject, Retry
from broker.metrics import ConsumerMetrics
from broker.publisher import Outgoing, Publisher
from broker.topology import DELAY_TIERS_MS, QueueSpec, pick_tier
from broker.trust import Trust
from contracts.versions import NewerVersion

log = structlog.get_logger(__name__)


class DeadLetterByBroker(Exception):
    """A consumer that may not publish dead letters (an agent's own broker user): reject
    the delivery without requeue, so the queue's own dead-letter exchange takes it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


HORIZON = "retry_horizon"  # the dead-letter reason of a copy parked past its retry horizon
CLOCK_SLACK_S = 5.0  # replicas' clocks may differ this much when they read each other's due-at


class Settlement:
    def __init__(
        self,
        conn: BrokerConnection,
        spec: QueueSpec,
        publisher: Publisher,
        trust: Trust,
        metrics: ConsumerMetrics,
        *,
        worker: str,
        replica: str,
        by_broker: bool = False,
    ) -> None:
        self.conn = conn
        # dead-letter by rejecting (no requeue): for a user with no write on the DLX and
        # the retry exchange, whose queue dead-letters on its own (x-dead-letter-exchange)
        self.by_broker = by_broker
        self.spec = spec
        self.publisher = publisher
        self.trust = trust
        self.metrics = metrics
        self.worker = worker
        self.replica = replica
        self.settings = conn.settings
        self.settled = 0  # copies parked or dead-lettered
        # the longest a message may wait in the delay queues, from now
        self.horizon_s = max(self.settings.retry_max_s, DELAY_TIERS_MS[-1] / 1000)

    def due_in(self, headers: dict[str, Any]) -> float:
        """Seconds until a parked copy is due (<= 0: now); raises Reject past the horizon."""
        due = int_header(headers.get(h.DUE_AT), 0)
        if not due:
            return 0.0
        wait = due / 1000 - time.time()
        if wait > self.horizon_s + CLOCK_SLACK_S:
            raise Reject(
                f"due in {wait:.0f} s, past the retry horizon of {self.horizon_s:.0f} s",
                reason=HORIZON,
            )
        return wait

    async def failed(
        self, delivery: Delivery, headers: dict[str, Any], attempt: int, exc: BaseException
    ) -> None:
        if isinstance(exc, Reject):
            await self.dead_letter(delivery, headers, exc.reason, exc.detail, "Reject", attempt)
            return
        error_type = type(exc).__name__
        error = exc.reason if isinstance(exc, Retry) else f"{error_type}: {exc}"
        if attempt >= self.settings.max_attempts or self.by_broker:
            reason = "retries_exhausted" if isinstance(exc, Retry) else "handler_error"
            log.error("message.dead_lettered", reason=reason, error=error)
            await self.dead_letter(delivery, headers, reason, error, error_type, attempt)
            return
        after = exc.after if isinstance(exc, Retry) and exc.after is not None else None
        delay = min(after if after is not None else self.backoff(attempt), self.horizon_s)
        log.warning(
            "message.retry",
            error=error,
            error_type=error_type,
            delay_s=round(delay, 3),
            exc_info=not isinstance(exc, Retry),
        )
        self.metrics.retried(delivery.type, error_type)
        retry_headers = {**headers, h.ATTEMPT: attempt + 1, h.LAST_ERROR: error[:1000]}
        # after a trip through a delay queue the delivery's own exchange is the requeue one;
        # keep where the sender really published it, for dead letters and replays
        retry_headers.setdefault(h.DL_EXCHANGE, delivery.exchange)
        retry_headers.setdefault(h.DL_ROUTING_KEY, delivery.routing_key)
        await self.park(delivery, retry_headers, attempt + 1, delay)

    async def newer_version(
        self, delivery: Delivery, headers: dict[str, Any], attempt: int, exc: NewerVersion
    ) -> None:
        """A message newer than this code reads: park it for a replica of the next release
        (a rolling upgrade is under way), or dead-letter it with the reason once the retry
        horizon has passed, or at once if it is more than one release ahead."""
        now = time.time()
        since = int_header(headers.get(h.NEWER_SINCE), 0) or int(now * 1000)
        delay = newer_wait(since / 1000, now, self.horizon_s, attempt) if exc.next_release else None
        if delay is None:
            waited = now - since / 1000
            detail = (
                exc.detail if waited < 1 else f"{exc.detail}; no replica took it in {waited:.0f} s"
            )
            await self.dead_letter(delivery, headers, exc.reason, detail, None, attempt)
            return
        log.info("message.parked_for_newer_release", delay_s=round(delay, 3), error=exc.detail)
        self.metrics.retried(delivery.type, type(exc).__name__)
        out = {**headers, h.NEWER_SINCE: since, h.LAST_ERROR: exc.detail[:1000]}
        out.setdefault(h.DL_EXCHANGE, delivery.exchange)
        out.setdefault(h.DL_ROUTING_KEY, delivery.routing_key)
        await self.park(delivery, out, attempt + 1, delay)

    def backoff(self, attempt: int) -> float:
        growth: float = 2.0 ** (attempt - 1)
        return min(self.settings.retry_max_s, self.settings.retry_initial_s * growth)

    async def park(
        self, delivery: Delivery, headers: dict[str, Any], attempt: int, delay: float
    ) -> None:
        """Send a copy through the delay queue that fits ``delay`` (the caller then acks)."""
        if self.by_broker:  # no write on the retry exchange: the queue dead-letters it
            log.warning("message.rejected_to_dead_letters", reason="unparkable", delay_s=delay)
            raise DeadLetterByBroker("unparkable")
        tier = pick_tier(delay)
        out_headers = {**headers, h.ATTEMPT: attempt}
        if delay * 1000 > tier:
            out_headers[h.DUE_AT] = int(time.time() * 1000 + delay * 1000)
        else:
            out_headers.pop(h.DUE_AT, None)
        self.trust.keep_user(delivery.user_id, out_headers)
        topology = self.conn.topology
        await self.publisher.publish_raw(
            Outgoing(
                exchange=topology.retry,
                routing_key=topology.retry_routing_key(tier, self.spec.name),
                body=delivery.body,
                message_id=delivery.message_id or "",
                headers=out_headers,
                type=delivery.type,
                correlation_id=delivery.correlation_id,
            )
        )
        self.settled += 1

    async def dead_letter(
        self,
        delivery: Delivery,
        headers: dict[str, Any],
        reason: str,
        error: str,
        error_type: str | None,
        attempt: int,
        errors: list[dict[str, str]] | None = None,
        *,
        quiet: bool = False,
    ) -> None:
        if self.by_broker:
            log.warning("message.rejected_to_dead_letters", reason=reason, error=error[:500])
            self.metrics.dead_lettered(delivery.type, reason)
            raise DeadLetterByBroker(reason)
        if not quiet:
            log.warning("message.dead_lettered", reason=reason, error=error[:500])
        self.metrics.dead_lettered(delivery.type, reason)
        out = dead_letter_headers(
            headers,
            reason=reason,
            error=error,
            error_type=error_type,
            errors=errors,
            queue=self.spec.name,
            exchange=str(headers.get(h.DL_EXCHANGE) or delivery.exchange),
            routing_key=str(headers.get(h.DL_ROUTING_KEY) or delivery.routing_key),
            attempts=attempt,
            worker=self.worker,
            replica=self.replica,
            message_type=delivery.type,
            original_user_id=self.trust.acting_user(delivery.user_id, headers),
        )
        await self.publisher.publish_raw(
            Outgoing(
                exchange=self.conn.topology.dlx,
                routing_key=self.conn.topology.dead_letter_key(self.spec),
                body=delivery.body,
                message_id=delivery.message_id or "",
                headers=out,
                type=delivery.type,
                correlation_id=delivery.correlation_id,
                content_type=delivery.content_type,
            )
        )
        self.settled += 1


def newer_wait(since: float, now: float, horizon_s: float, attempt: int) -> float | None:
    """How long to park a message a newer release wrote (None: no longer: dead-letter it).

    Waits grow from a second, so a replica of the new release started in the meantime
    takes it soon, and all of them end within ``horizon_s`` of the first refusal."""
    left = since + horizon_s - now
    if left <= 0:
        return None
    return min(left, max(1.0, min(30.0, 2.0 ** (attempt - 1))))
