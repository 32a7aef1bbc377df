"""The consumer runtime: the one place that acks.

For each delivery: decode → validate → dispatch by type → ack. A message that
cannot be decoded, validated or routed is dead-lettered at once with the
reason in its headers (no requeue loop). A handler that raises :class:`Retry`
or any other exception is retried through a delay queue with exponential
back-off, and dead-lettered with the reason after its last attempt; one that
raises :class:`Reject` is dead-lettered at once. Nothing is acked before it is
handled or safely parked elsewhere with a confirm, so a crash loses nothing:
the broker redelivers what was unacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from broker import headers as h
from broker import tracing
from broker.connection import BrokerConnection
from broker.deadletter import ORIGINAL_USER_ID, dead_letter_headers
from broker.declare import declare_queue
from broker.errors import DependencyUnavailable, Reject, Retry
from broker.logs import bind_message_fields, message_fields
from broker.metrics import ConsumerMetrics
from broker.publisher import JSON, Outgoing, Publisher
from broker.router import BatchHandler, Incoming, Router
from broker.topology import QueueSpec, pick_tier
from contracts import (
    BUNDLE_CONTENT_TYPE,
    BundleMember,
    ContractError,
    InvalidMessage,
    decode,
    decode_bundle,
)
from contracts.bundle import BUNDLE_COUNT

log = structlog.get_logger(__name__)

DUE_AT = "x-rally-due-at"  # epoch ms before which a retried message hops another delay tier
LAST_ERROR = "x-rally-last-error"

Authorize = Callable[[Incoming[Any]], None]  # raises Reject(reason="security") to refuse
HOLD_MAX_S = 5.0  # the longest pause between tries of a delivery held while the store is down
BUNDLE_SIZE_FACTOR = 16  # a bundle may be this many times the size limit of one message
T = TypeVar("T")


class _LeftUnacked(Exception):
    """Stopping while a dependency is down: the delivery goes back to the broker unacked."""


# Fault injection, for tests only (off by default): RALLY_FAULT_EXIT_AFTER_APPEND=n makes the
# process die like a SIGKILL after its nth handled delivery: the handler's append is committed,
# the delivery not yet acked. tests/faults/test_worker_crashes.py shows nothing is applied twice.
_FAULT_EXIT_AFTER_APPEND = int(os.environ.get("RALLY_FAULT_EXIT_AFTER_APPEND") or 0)
_fault_handled = 0


def _fault_exit_after_append(message_id: str | None) -> None:
    global _fault_handled
    if _FAULT_EXIT_AFTER_APPEND:
        _fault_handled += 1
        if _fault_handled >= _FAULT_EXIT_AFTER_APPEND:
            print(f"rally-fault: exit after append of {message_id}, before its ack", flush=True)
            os._exit(70)


class Consumer:
    def __init__(
        self,
        conn: BrokerConnection,
        spec: QueueSpec,
        router: Router,
        publisher: Publisher,
        *,
        worker: str,
        replica: str,
        prefetch: int | None = None,
        authorize: Authorize | None = None,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 256,
        passive: bool = False,
    ) -> None:
        self.conn = conn
        self.spec = spec
        self.router = router
        self.publisher = publisher
        self.worker = worker
        self.replica = replica
        self.prefetch = prefetch or conn.settings.prefetch
        self.authorize = authorize
        self.batch_handler = batch_handler
        self.max_batch = max_batch
        self.passive = passive  # only check the queue exists: a user that may not declare it
        self._settings = conn.settings
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._batch: asyncio.Queue[tuple[Incoming[Any], asyncio.Future[None]]] = asyncio.Queue()
        self._batch_task: asyncio.Task[None] | None = None
        self.handled = 0  # messages settled (handled, retried or dead-lettered), bundled or not
        self.metrics = ConsumerMetrics(worker, replica)
        self.tracer = tracing.ConsumerTracer(
            worker, replica, spec.name, batched=batch_handler is not None
        )

    async def start(self) -> Consumer:
        self._channel = await self.conn.channel(confirms=False, prefetch=self.prefetch)
        self._queue = await declare_queue(self.conn, self._channel, self.spec, passive=self.passive)
        if self.batch_handler is not None:
            self._batch_task = asyncio.create_task(
                self._batch_loop(), name=f"batch:{self.spec.name}"
            )
        self._tag = await self._queue.consume(self._on_message)
        log.info("consumer.started", queue=self.spec.name, prefetch=self.prefetch)
        return self

    async def stop(self, timeout: float = 30.0) -> None:
        """Take no new deliveries, finish those in hand, then close the channel."""
        if self._queue is not None and self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except Exception as exc:  # the channel may already be gone; unacked is requeued
                log.warning("consumer.cancel_failed", error=str(exc))
            self._tag = None
        try:
            await asyncio.wait_for(self._wait_drained(), timeout)
        except TimeoutError:
            log.warning("consumer.stop_timeout", queue=self.spec.name, inflight=self._inflight)
        if self._batch_task is not None:
            self._batch_task.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        log.info("consumer.stopped", queue=self.spec.name, handled=self.handled)
        self.metrics.close()

    async def _wait_drained(self) -> None:
        while True:
            await self._idle.wait()
            if self._inflight == 0 and self._batch.empty():
                return
            await asyncio.sleep(0.01)

    # ---- one delivery: a message, or a bundle of them ----
    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._inflight += 1
        self._idle.clear()
        try:
            if message.content_type == BUNDLE_CONTENT_TYPE:
                settled = await self._process_bundle(message)
            else:
                settled = await self._process(_delivery(message, self._headers(message)))
            if settled:
                await self._ack(message)
        except Exception:
            # could not even park or dead-letter it (broker trouble): give it back for later;
            # the queue's delivery limit stops a loop
            log.exception("message.requeued_after_runtime_error", queue=self.spec.name)
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    def _headers(self, message: AbstractIncomingMessage) -> dict[str, Any]:
        headers: dict[str, Any] = dict(message.headers or {})
        if not message.user_id:
            # nobody the broker vouched for: a sender header is forged, and "" keeps the
            # message anonymous through retries, dead letters and replays (broker/identity.py)
            headers[ORIGINAL_USER_ID] = ""
        return headers

    async def _process_bundle(self, message: AbstractIncomingMessage) -> bool:
        """Each member as if it came alone, all at once; the bundle is acked when all are settled.

        A member that fails is retried or dead-lettered alone, as a message of its own.
        """
        headers = self._headers(message)
        try:
            members = decode_bundle(
                message.body, max_bytes=BUNDLE_SIZE_FACTOR * self._settings.max_message_bytes
            )
        except ContractError as exc:
            whole = _delivery(message, headers)
            with message_fields(
                message_id=message.message_id, queue=self.spec.name, worker=self.worker
            ):
                await self._dead_letter(whole, headers, exc.reason, exc.detail, None, None, 1)
            return True
        headers.pop(BUNDLE_COUNT, None)
        results = await asyncio.gather(
            *(self._process(_member(message, headers, m)) for m in members),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return all(results)

    async def _process(self, delivery: Delivery) -> bool:
        """Handle, retry or dead-letter one message; False: leave its delivery unacked."""
        headers = delivery.headers
        attempt = _int(headers.get(h.ATTEMPT), 1)
        with (
            message_fields(
                message_id=delivery.message_id,
                correlation_id=delivery.correlation_id,
                msg_type=delivery.type,
                queue=self.spec.name,
                worker=self.worker,
                replica=self.replica,
                attempt=attempt,
            ),
            self.tracer.consuming(delivery, headers),
        ):
            due = _int(headers.get(DUE_AT), 0)
            if due and due > time.time() * 1000 + 20:
                await self._park(delivery, headers, attempt, (due - time.time() * 1000) / 1000)
                return True
            try:
                envelope = decode(delivery.body, max_bytes=self._settings.max_message_bytes)
            except ContractError as exc:
                errors = exc.errors if isinstance(exc, InvalidMessage) else None
                await self._dead_letter(
                    delivery, headers, exc.reason, exc.detail, None, errors, attempt
                )
                return True
            envelope_id, correlation_id = str(envelope.id), str(envelope.correlation_id)
            if envelope_id != delivery.message_id or correlation_id != delivery.correlation_id:
                # the AMQP properties said otherwise (or nothing): the envelope is the truth
                bind_message_fields(message_id=envelope_id, correlation_id=correlation_id)
            self.tracer.decoded(envelope.type)
            incoming = Incoming(
                envelope=envelope,
                attempt=attempt,
                user_id=self._user_id(delivery, headers),
                queue=self.spec.name,
                redelivered=delivery.redelivered,
                headers=headers,
            )
            handler = self.router.get(envelope.type)
            if handler is None and self.batch_handler is None:
                detail = f"{self.spec.name} has no handler for {envelope.type}"
                await self._dead_letter(
                    delivery, headers, "unknown_type", detail, None, None, attempt
                )
                return True
            try:
                if self.authorize is not None:
                    self.authorize(incoming)
            except Reject as exc:
                await self._dead_letter(
                    delivery, headers, exc.reason, exc.detail, None, None, attempt
                )
                return True
            started = time.perf_counter()
            try:
                if handler is None or self.batch_handler is not None:
                    await self._in_batch(incoming)
                else:
                    await self._until_available(lambda: handler(incoming))
            except _LeftUnacked:
                return False
            except Exception as exc:
                self.metrics.ran(envelope.type, started)
                await self._failed(delivery, headers, attempt, exc)
                return True
            self.metrics.acked(envelope.type, started)
            _fault_exit_after_append(delivery.message_id)
            self.handled += 1
            return True

    async def _until_available(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``; while a dependency (the store) is down, hold the delivery and run it again.

        The delivery stays unacked and no attempt is used up: the message is not at fault.
        If the consumer stops meanwhile, it is left unacked for the broker to hand on.
        """
        delay = max(self._settings.retry_initial_s, 0.05)
        while True:
            try:
                return await call()
            except DependencyUnavailable as exc:
                if self._tag is None:
                    raise _LeftUnacked from exc
                log.warning("message.held", error=str(exc)[:300], retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
                delay = min(2 * delay, HOLD_MAX_S)

    async def _failed(
        self,
        delivery: Delivery,
        headers: dict[str, Any],
        attempt: int,
        exc: BaseException,
    ) -> None:
        if isinstance(exc, Reject):
            await self._dead_letter(
                delivery, headers, exc.reason, exc.detail, "Reject", None, attempt
            )
            return
        error_type = type(exc).__name__
        error = exc.reason if isinstance(exc, Retry) else f"{error_type}: {exc}"
        if attempt >= self._settings.max_attempts:
            reason = "retries_exhausted" if isinstance(exc, Retry) else "handler_error"
            log.error("message.dead_lettered", reason=reason, error=error)
            await self._dead_letter(delivery, headers, reason, error, error_type, None, attempt)
            return
        after = exc.after if isinstance(exc, Retry) and exc.after is not None else None
        delay = after if after is not None else self._backoff(attempt)
        log.warning(
            "message.retry",
            error=error,
            error_type=error_type,
            delay_s=round(delay, 3),
            exc_info=not isinstance(exc, Retry),
        )
        self.metrics.retried(delivery.type, error_type)
        retry_headers = {**headers, h.ATTEMPT: attempt + 1, LAST_ERROR: error[:1000]}
        # after a trip through a delay queue the delivery's own exchange is the requeue one;
        # keep where the sender really published it, for dead letters and replays
        retry_headers.setdefault(h.DL_EXCHANGE, delivery.exchange)
        retry_headers.setdefault(h.DL_ROUTING_KEY, delivery.routing_key)
        await self._park(delivery, retry_headers, attempt + 1, delay)

    def _backoff(self, attempt: int) -> float:
        growth: float = 2.0 ** (attempt - 1)
        return min(self._settings.retry_max_s, self._settings.retry_initial_s * growth)

    async def _park(
        self, delivery: Delivery, headers: dict[str, Any], attempt: int, delay: float
    ) -> None:
        """Send a copy through the delay queue that fits ``delay`` (the caller then acks)."""
        tier = pick_tier(delay)
        out_headers = {**headers, h.ATTEMPT: attempt}
        if delay * 1000 > tier:
            out_headers[DUE_AT] = int(time.time() * 1000 + delay * 1000)
        else:
            out_headers.pop(DUE_AT, None)
        self._keep_user(delivery, out_headers)
        await self.publisher.publish_raw(
            Outgoing(
                exchange=self.conn.topology.retry,
                routing_key=self.conn.topology.retry_routing_key(tier, self.spec.name),
                body=delivery.body,
                message_id=delivery.message_id or "",
                headers=out_headers,
                type=delivery.type,
                correlation_id=delivery.correlation_id,
            )
        )
        self.handled += 1

    async def _dead_letter(
        self,
        delivery: Delivery,
        headers: dict[str, Any],
        reason: str,
        error: str,
        error_type: str | None,
        errors: list[dict[str, str]] | None,
        attempt: int,
    ) -> None:
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
            original_user_id=self._user_id(delivery, headers),
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
        self.handled += 1

    def _user_id(self, delivery: Delivery, headers: Mapping[str, Any]) -> str | None:
        """The broker-validated publisher; for our own retries, the user who first sent it."""
        if (
            delivery.user_id
            and delivery.user_id == self.publisher.user_id
            and ORIGINAL_USER_ID in headers
        ):
            return str(headers[ORIGINAL_USER_ID])
        return delivery.user_id

    def _keep_user(self, delivery: Delivery, headers: dict[str, Any]) -> None:
        user = self._user_id(delivery, headers)
        if user:
            headers[ORIGINAL_USER_ID] = user

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except Exception as exc:  # channel gone: the broker requeues it; handlers are idempotent
            log.warning("message.ack_failed", error=str(exc))

    # ---- batches (single-active workers that decide over many messages at once) ----
    async def _in_batch(self, incoming: Incoming[Any]) -> None:
        """Queue it for the batch handler; returns when its batch is done, or raises its failure."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._batch.put((incoming, future))
        await future

    async def _batch_loop(self) -> None:
        assert self.batch_handler is not None
        while True:
            first = await self._batch.get()
            items = [first]
            while len(items) < self.max_batch and not self._batch.empty():
                items.append(self._batch.get_nowait())
            try:
                await self._run_batch(items)
            except BaseException as exc:  # nobody may wait forever on a batch
                for _, future in items:
                    if not future.done():
                        future.set_exception(
                            _LeftUnacked() if not isinstance(exc, Exception) else exc
                        )
                raise

    async def _run_batch(self, items: Sequence[tuple[Incoming[Any], asyncio.Future[None]]]) -> None:
        assert self.batch_handler is not None
        failures: Mapping[int, BaseException]
        try:
            incomings = [incoming for incoming, _ in items]
            batch_handler = self.batch_handler
            found = await self._until_available(lambda: self.tracer.batch(batch_handler, incomings))
            failures = found or {}
        except _LeftUnacked as exc:
            failures = dict.fromkeys(range(len(items)), exc)
        except Exception as exc:
            log.warning("batch.failed", size=len(items), error=str(exc), exc_info=True)
            failures = dict.fromkeys(range(len(items)), exc)
        for index, (_, future) in enumerate(items):
            if future.done():
                continue
            failure = failures.get(index)
            if failure is None:
                future.set_result(None)
            else:
                future.set_exception(failure)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the runtime handles it: a delivery of its own, or a member of a bundle."""

    body: bytes
    message_id: str | None
    type: str | None
    correlation_id: str | None
    headers: dict[str, Any]
    user_id: str | None
    exchange: str
    routing_key: str
    redelivered: bool
    content_type: str = JSON


def _delivery(message: AbstractIncomingMessage, headers: dict[str, Any]) -> Delivery:
    return Delivery(
        body=message.body,
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
        headers=headers,
        user_id=message.user_id,
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        redelivered=bool(message.redelivered),
        content_type=message.content_type or JSON,
    )


def _member(
    message: AbstractIncomingMessage, headers: Mapping[str, Any], member: BundleMember
) -> Delivery:
    return Delivery(
        body=member.body,
        message_id=member.message_id,
        type=member.type,
        correlation_id=member.correlation_id,
        headers={**headers, **member.headers},
        user_id=message.user_id,
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        redelivered=bool(message.redelivered),
    )


def _int(value: object, default: int) -> int:
    if value is None:  # the usual case: no such header (and raising costs more than a check)
        return default
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return default
