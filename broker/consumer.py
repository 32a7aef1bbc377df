"""The consumer runtime: the one place that acks.

For each delivery: admit its headers (broker/trust.py) → decode → validate → identify and
authorize → park if it is not yet due → dispatch by type → ack. A message that cannot be
decoded, validated, authorized or routed is dead-lettered at once with the reason in its
headers (no requeue loop). A handler that raises :class:`Retry` or any other exception is
retried through a delay queue with exponential back-off, and dead-lettered with the reason
after its last attempt; one that raises :class:`Reject` is dead-lettered at once
(broker/settle.py). Nothing is acked before it is handled or safely parked elsewhere with a
confirm, so a crash loses nothing: the broker redelivers what was unacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from broker import headers as h
from broker import tracing
from broker.batches import Batcher
from broker.bundles import BUNDLE_SIZE_FACTOR, member_limit, split
from broker.connection import BrokerConnection
from broker.declare import declare_queue
from broker.delivery import Delivery, from_message, int_header
from broker.errors import Reject
from broker.hold import LeftUnacked, fault_exit_after_append, until_available
from broker.identity import AccessPolicy
from broker.logs import bind_message_fields, message_fields
from broker.metrics import ConsumerMetrics
from broker.publisher import Publisher
from broker.router import BatchHandler, Incoming, Router
from broker.settle import DeadLetterByBroker, Settlement
from broker.topology import QueueSpec
from broker.trust import Trust
from contracts import BUNDLE_CONTENT_TYPE, ContractError, InvalidMessage, Message, decode
from contracts.versions import NewerVersion

log = structlog.get_logger(__name__)

Authorize = Callable[[Incoming[Any]], None]  # raises Reject(reason="security") to refuse
__all__ = ["Authorize", "Consumer", "Delivery"]


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
        policy: AccessPolicy | None = None,
        batch_handler: BatchHandler | None = None,
        batch_types: Iterable[str | type[Message]] | None = None,
        max_batch: int = 256,
        passive: bool = False,
        wake_types: Iterable[str] = (),
        on_wake: Callable[[str], None] | None = None,
        dead_letter_by_broker: bool = False,
    ) -> None:
        """``policy`` says whose headers are facts (default: RALLY_SERVICE_USERS and our own
        user); a batch consumer names the message types its ``batch_handler`` takes in
        ``batch_types``: any other is dead-lettered ``unknown_type``.

        ``wake_types`` are messages a worker only needs to hear of, not read (events it reads
        from the store anyway): from a service user they are neither decoded nor handled;
        ``on_wake(type)`` is called and the delivery acked. From anyone else they take the
        usual path (decode, authorize: an event from a non-service user is refused).

        ``dead_letter_by_broker``: for a user that may not publish dead letters or retries
        (an agent's own broker user), a message that would be dead-lettered or retried is
        rejected without requeue instead, and the queue's dead-letter exchange takes it; a
        bundle is rejected whole only when every member is, else its bad members are logged
        and dropped (one AMQP message cannot be part rejected)."""
        if batch_handler is not None and batch_types is None:
            raise ValueError(f"{spec.name}: a batch consumer names the types it handles")
        self.conn = conn
        self.spec = spec
        self.router = router
        self.publisher = publisher
        self.worker = worker
        self.replica = replica
        self.prefetch = prefetch or conn.settings.prefetch
        self.authorize = authorize
        self.passive = passive  # only check the queue exists: a user that may not declare it
        self._settings = conn.settings
        self.trust = Trust(policy or AccessPolicy.from_env(publisher.user_id), publisher.user_id)
        self.metrics = ConsumerMetrics(worker, replica)
        self.settle = Settlement(
            conn,
            spec,
            publisher,
            self.trust,
            self.metrics,
            worker=worker,
            replica=replica,
            by_broker=dead_letter_by_broker,
        )
        self.batch_types = frozenset(
            t if isinstance(t, str) else t.type_name() for t in batch_types or ()
        )
        self.batcher = (
            None
            if batch_handler is None
            else Batcher(batch_handler, self._run_batch, max_batch=max_batch)
        )
        self._max_members = member_limit(self._settings.bundle_max)
        self.wake_types = frozenset(wake_types)
        self.on_wake = on_wake
        if self.wake_types and on_wake is None:
            raise ValueError(f"{spec.name}: wake_types need an on_wake callback")
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._batch_task: asyncio.Task[None] | None = None
        self._handled = 0
        self.tracer = tracing.ConsumerTracer(
            worker, replica, spec.name, batched=batch_handler is not None
        )

    @property
    def handled(self) -> int:
        """Messages settled (handled, retried or dead-lettered), bundled or not."""
        return self._handled + self.settle.settled

    async def start(self) -> Consumer:
        self._channel = await self.conn.channel(confirms=False, prefetch=self.prefetch)
        self._queue = await declare_queue(self.conn, self._channel, self.spec, passive=self.passive)
        if self.batcher is not None:
            self._batch_task = asyncio.create_task(
                self.batcher.loop(), name=f"batch:{self.spec.name}"
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
            if self._inflight == 0 and (self.batcher is None or self.batcher.queue.empty()):
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
                headers = self.trust.admit(message.user_id, message.headers or {})
                settled = await self._process(from_message(message, headers))
            if settled:
                await self._ack(message)
        except DeadLetterByBroker:
            with contextlib.suppress(Exception):  # channel gone: it comes back, redelivered
                await message.reject(requeue=False)
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

    async def _process_bundle(self, message: AbstractIncomingMessage) -> bool:
        """Each member as if it came alone, all at once; the bundle is acked when all are settled.

        A member that fails is retried or dead-lettered alone, as a message of its own.
        """
        try:
            members = split(
                message,
                self.trust,
                max_bytes=BUNDLE_SIZE_FACTOR * self._settings.max_message_bytes,
                max_members=self._max_members,
            )
        except ContractError as exc:
            headers = self.trust.admit(message.user_id, message.headers or {})
            with message_fields(
                message_id=message.message_id, queue=self.spec.name, worker=self.worker
            ):
                await self.settle.dead_letter(
                    from_message(message, headers), headers, exc.reason, exc.detail, None, 1
                )
            return True
        results = await asyncio.gather(
            *(self._process(member) for member in members), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, DeadLetterByBroker)]
        if refused and len(refused) == len(results):
            raise refused[0]  # every member is bad: the whole bundle to the dead letters
        for result in results:
            if isinstance(result, DeadLetterByBroker):
                log.error("bundle.member_dropped", reason=result.reason, queue=self.spec.name)
            elif isinstance(result, BaseException):
                raise result
        return all(r is True or isinstance(r, DeadLetterByBroker) for r in results)

    async def _process(self, delivery: Delivery) -> bool:
        """Handle, park, retry or dead-letter one message; False: leave its delivery unacked."""
        headers = delivery.headers
        if self._wakes_only(delivery):
            return True
        attempt = int_header(headers.get(h.ATTEMPT), 1)
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
            try:
                envelope = decode(delivery.body, max_bytes=self._settings.max_message_bytes)
            except (
                NewerVersion
            ) as exc:  # written by the next release: one of its replicas may read it
                await self.settle.newer_version(delivery, headers, attempt, exc)
                return True
            except ContractError as exc:
                errors = exc.errors if isinstance(exc, InvalidMessage) else None
                await self.settle.dead_letter(
                    delivery, headers, exc.reason, exc.detail, None, attempt, errors
                )
                return True
            envelope_id, correlation_id = str(envelope.id), str(envelope.correlation_id)
            if envelope_id != delivery.message_id or correlation_id != delivery.correlation_id:
                # the AMQP properties said otherwise (or nothing): the envelope is the truth
                bind_message_fields(message_id=envelope_id, correlation_id=correlation_id)
            self.tracer.decoded(envelope.type)
            principal = self.trust.principal(delivery.user_id, headers)
            incoming = Incoming(
                envelope=envelope,
                attempt=attempt,
                user_id=self.trust.acting_user(delivery.user_id, headers),
                queue=self.spec.name,
                redelivered=delivery.redelivered,
                headers=headers,
                principal=principal,
                service=self.trust.is_service(principal),
            )
            handler = self.router.get(envelope.type)
            batched = self.batcher is not None and envelope.type in self.batch_types
            try:
                if handler is None and not batched:
                    detail = f"{self.spec.name} has no handler for {envelope.type}"
                    raise Reject(detail, reason="unknown_type")
                if self.authorize is not None:
                    self.authorize(incoming)
                due_in = self.settle.due_in(headers)
            except Reject as exc:
                await self.settle.dead_letter(
                    delivery, headers, exc.reason, exc.detail, None, attempt
                )
                return True
            if due_in > 0.02:  # decoded and allowed, not yet due: another delay tier
                await self.settle.park(delivery, headers, attempt, due_in)
                return True
            started = time.perf_counter()
            try:
                if batched:
                    assert self.batcher is not None
                    await self.batcher.submit(incoming)
                else:
                    assert handler is not None
                    await self._until_available(lambda: handler(incoming))
            except LeftUnacked:
                return False
            except Exception as exc:
                self.metrics.ran(envelope.type, started)
                await self.settle.failed(delivery, headers, attempt, exc)
                return True
            self.metrics.acked(envelope.type, started)
            fault_exit_after_append(delivery.message_id)
            self._handled += 1
            return True

    def _wakes_only(self, delivery: Delivery) -> bool:
        """A wake-up from a service user: tell the worker, skip decoding (the store has it)."""
        if delivery.type not in self.wake_types or self.on_wake is None:
            return False
        if not self.trust.is_service(delivery.user_id or None):
            return False
        self.tracer.woken(delivery.type, delivery.message_id, delivery.headers)
        self.on_wake(delivery.type)
        self.metrics.woken(delivery.type)
        self._handled += 1
        return True

    async def _until_available(self, call: Callable[[], Any]) -> Any:
        return await until_available(
            call, first_delay_s=self._settings.retry_initial_s, stopping=lambda: self._tag is None
        )

    async def _run_batch(
        self, handler: BatchHandler, incomings: Sequence[Incoming[Any]]
    ) -> Mapping[int, BaseException]:
        found = await self._until_available(lambda: self.tracer.batch(handler, incomings))
        return found or {}

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except Exception as exc:  # channel gone: the broker requeues it; handlers are idempotent
            log.warning("message.ack_failed", error=str(exc))
