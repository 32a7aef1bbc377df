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
from typing import Any, TypeVar

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from broker import headers as h
from broker import tracing
from broker.connection import BrokerConnection
from broker.deadletter import ORIGINAL_USER_ID, dead_letter_headers
from broker.declare import declare_queue
from broker.errors import DependencyUnavailable, Reject, Retry
from broker.metrics import ConsumerMetrics
from broker.publisher import Outgoing, Publisher
from broker.router import BatchHandler, Incoming, Router
from broker.topology import QueueSpec, pick_tier
from contracts import ContractError, InvalidMessage, decode

log = structlog.get_logger(__name__)

DUE_AT = "x-rally-due-at"  # epoch ms before which a retried message hops another delay tier
LAST_ERROR = "x-rally-last-error"

Authorize = Callable[[Incoming[Any]], None]  # raises Reject(reason="security") to refuse
HOLD_MAX_S = 5.0  # the longest pause between tries of a delivery held while the store is down
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
        self._batch: asyncio.Queue[tuple[Incoming[Any], AbstractIncomingMessage]] = asyncio.Queue()
        self._batch_task: asyncio.Task[None] | None = None
        self.handled = 0  # deliveries settled (acked, retried or dead-lettered)
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

    # ---- one delivery ----
    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._inflight += 1
        self._idle.clear()
        try:
            await self._process(message)
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

    async def _process(self, message: AbstractIncomingMessage) -> None:
        headers: dict[str, Any] = dict(message.headers or {})
        if not message.user_id:
            # nobody the broker vouched for: a sender header is forged, and "" keeps the
            # message anonymous through retries, dead letters and replays (broker/identity.py)
            headers[ORIGINAL_USER_ID] = ""
        attempt = _int(headers.get(h.ATTEMPT), 1)
        with (
            structlog.contextvars.bound_contextvars(
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                msg_type=message.type,
                queue=self.spec.name,
                worker=self.worker,
                replica=self.replica,
                attempt=attempt,
            ),
            self.tracer.consuming(message, headers),
        ):
            due = _int(headers.get(DUE_AT), 0)
            if due and due > time.time() * 1000 + 20:
                await self._park(message, headers, attempt, (due - time.time() * 1000) / 1000)
                return
            try:
                envelope = decode(message.body, max_bytes=self._settings.max_message_bytes)
            except ContractError as exc:
                errors = exc.errors if isinstance(exc, InvalidMessage) else None
                await self._dead_letter(
                    message, headers, exc.reason, exc.detail, None, errors, attempt
                )
                return
            structlog.contextvars.bind_contextvars(
                message_id=str(envelope.id), correlation_id=str(envelope.correlation_id)
            )
            self.tracer.decoded(envelope.type)
            incoming = Incoming(
                envelope=envelope,
                attempt=attempt,
                user_id=self._user_id(message, headers),
                queue=self.spec.name,
                redelivered=bool(message.redelivered),
                headers=headers,
            )
            handler = self.router.get(envelope.type)
            if handler is None and self.batch_handler is None:
                detail = f"{self.spec.name} has no handler for {envelope.type}"
                await self._dead_letter(
                    message, headers, "unknown_type", detail, None, None, attempt
                )
                return
            try:
                if self.authorize is not None:
                    self.authorize(incoming)
            except Reject as exc:
                await self._dead_letter(
                    message, headers, exc.reason, exc.detail, None, None, attempt
                )
                return
            if self.batch_handler is not None:
                await self._batch.put((incoming, message))
                return
            assert handler is not None
            started = time.perf_counter()
            try:
                await self._until_available(lambda: handler(incoming))
            except _LeftUnacked:
                return
            except Exception as exc:
                self.metrics.ran(envelope.type, started)
                await self._failed(message, headers, attempt, exc)
                return
            self.metrics.acked(envelope.type, started)
            _fault_exit_after_append(message.message_id)
            await self._ack(message)

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
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        attempt: int,
        exc: BaseException,
    ) -> None:
        if isinstance(exc, Reject):
            await self._dead_letter(
                message, headers, exc.reason, exc.detail, "Reject", None, attempt
            )
            return
        error_type = type(exc).__name__
        error = exc.reason if isinstance(exc, Retry) else f"{error_type}: {exc}"
        if attempt >= self._settings.max_attempts:
            reason = "retries_exhausted" if isinstance(exc, Retry) else "handler_error"
            log.error("message.dead_lettered", reason=reason, error=error)
            await self._dead_letter(message, headers, reason, error, error_type, None, attempt)
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
        self.metrics.retried(message.type, error_type)
        retry_headers = {**headers, h.ATTEMPT: attempt + 1, LAST_ERROR: error[:1000]}
        # after a trip through a delay queue the delivery's own exchange is the requeue one;
        # keep where the sender really published it, for dead letters and replays
        retry_headers.setdefault(h.DL_EXCHANGE, message.exchange or "")
        retry_headers.setdefault(h.DL_ROUTING_KEY, message.routing_key or "")
        await self._park(message, retry_headers, attempt + 1, delay)

    def _backoff(self, attempt: int) -> float:
        growth: float = 2.0 ** (attempt - 1)
        return min(self._settings.retry_max_s, self._settings.retry_initial_s * growth)

    async def _park(
        self, message: AbstractIncomingMessage, headers: dict[str, Any], attempt: int, delay: float
    ) -> None:
        """Send a copy through the delay queue that fits ``delay``, then ack the original."""
        tier = pick_tier(delay)
        out_headers = {**headers, h.ATTEMPT: attempt}
        if delay * 1000 > tier:
            out_headers[DUE_AT] = int(time.time() * 1000 + delay * 1000)
        else:
            out_headers.pop(DUE_AT, None)
        self._keep_user(message, out_headers)
        await self.publisher.publish_raw(
            Outgoing(
                exchange=self.conn.topology.retry,
                routing_key=self.conn.topology.retry_routing_key(tier, self.spec.name),
                body=message.body,
                message_id=message.message_id or "",
                headers=out_headers,
                type=message.type,
                correlation_id=message.correlation_id,
            )
        )
        await self._ack(message)

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        reason: str,
        error: str,
        error_type: str | None,
        errors: list[dict[str, str]] | None,
        attempt: int,
    ) -> None:
        log.warning("message.dead_lettered", reason=reason, error=error[:500])
        self.metrics.dead_lettered(message.type, reason)
        out = dead_letter_headers(
            headers,
            reason=reason,
            error=error,
            error_type=error_type,
            errors=errors,
            queue=self.spec.name,
            exchange=str(headers.get(h.DL_EXCHANGE) or message.exchange or ""),
            routing_key=str(headers.get(h.DL_ROUTING_KEY) or message.routing_key or ""),
            attempts=attempt,
            worker=self.worker,
            replica=self.replica,
            message_type=message.type,
            original_user_id=self._user_id(message, headers),
        )
        await self.publisher.publish_raw(
            Outgoing(
                exchange=self.conn.topology.dlx,
                routing_key=self.conn.topology.dead_letter_key(self.spec),
                body=message.body,
                message_id=message.message_id or "",
                headers=out,
                type=message.type,
                correlation_id=message.correlation_id,
            )
        )
        await self._ack(message)

    def _user_id(self, message: AbstractIncomingMessage, headers: Mapping[str, Any]) -> str | None:
        """The broker-validated publisher; for our own retries, the user who first sent it."""
        if (
            message.user_id
            and message.user_id == self.publisher.user_id
            and ORIGINAL_USER_ID in headers
        ):
            return str(headers[ORIGINAL_USER_ID])
        return message.user_id

    def _keep_user(self, message: AbstractIncomingMessage, headers: dict[str, Any]) -> None:
        user = self._user_id(message, headers)
        if user:
            headers[ORIGINAL_USER_ID] = user

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except Exception as exc:  # channel gone: the broker requeues it; handlers are idempotent
            log.warning("message.ack_failed", error=str(exc))
        self.handled += 1

    # ---- batches (single-active workers that decide over many messages at once) ----
    async def _batch_loop(self) -> None:
        assert self.batch_handler is not None
        while True:
            first = await self._batch.get()
            items = [first]
            while len(items) < self.max_batch and not self._batch.empty():
                items.append(self._batch.get_nowait())
            self._inflight += 1
            self._idle.clear()
            try:
                await self._run_batch(items)
            finally:
                self._inflight -= 1
                if self._inflight == 0:
                    self._idle.set()

    async def _run_batch(
        self, items: Sequence[tuple[Incoming[Any], AbstractIncomingMessage]]
    ) -> None:
        assert self.batch_handler is not None
        failures: Mapping[int, BaseException]
        started = time.perf_counter()
        try:
            incomings = [incoming for incoming, _ in items]
            batch_handler = self.batch_handler
            found = await self._until_available(lambda: self.tracer.batch(batch_handler, incomings))
            failures = found or {}
        except _LeftUnacked:
            return
        except Exception as exc:
            log.warning("batch.failed", size=len(items), error=str(exc), exc_info=True)
            failures = dict.fromkeys(range(len(items)), exc)
        for index, (incoming, message) in enumerate(items):
            with structlog.contextvars.bound_contextvars(
                message_id=incoming.message_id, msg_type=incoming.envelope.type
            ):
                failure = failures.get(index)
                if failure is None:
                    self.metrics.acked(incoming.envelope.type, started)
                    await self._ack(message)
                else:
                    self.metrics.ran(incoming.envelope.type, started)
                    await self._failed(message, dict(incoming.headers), incoming.attempt, failure)


def _int(value: object, default: int) -> int:
    if value is None:  # the usual case: no such header (and raising costs more than a check)
        return default
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return default
