"""Reports that get through: one envelope, published again and again until confirmed.

An agent's report must count exactly once even when the connection drops
while it is in flight. The envelope (and so its message id) is built once;
each retry publishes those same bytes, so a copy that did reach the broker
before the drop is a duplicate the workers discard by message id. Retrying
runs in background tasks, so one stuck report never holds up another task.
One task's reports (started before progress before the final report) go out
in order without making the handler wait for confirms, and without making a
report wait for the confirm of the one before it: background deliveries start
in the order they were created, and the publisher puts messages on its one
channel in the order it was handed them, so the broker queues them in order.
Only a report that needs a retry can be overtaken by a later one, and the task
manager takes that in its stride (a final report is accepted before the
start; the late start is then stale and ignored).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from broker.publisher import Publisher, routing_key_for
from contracts import ContractError, Envelope, Message
from sdk.clock import Clock

log = structlog.get_logger(__name__)


class ReliableSender:
    def __init__(
        self, publisher: Publisher, clock: Clock, *, initial_s: float = 0.2, max_s: float = 5.0
    ) -> None:
        self.publisher = publisher
        self.clock = clock
        self._initial_s = initial_s
        self._max_s = max_s
        # strong references: a background publish must not be garbage-collected mid-flight
        self._pending: set[asyncio.Task[None]] = set()

    def wrap(self, payload: Message, caused_by: Envelope[Any] | None = None) -> Envelope[Message]:
        return Envelope.wrap(payload, sender=self.publisher.sender, caused_by=caused_by)

    async def deliver(self, envelope: Envelope[Any]) -> None:
        """Publish this command envelope until the broker confirms it. Never gives up."""
        attempt = 0
        key = routing_key_for(envelope.payload)
        while True:
            attempt += 1
            try:
                await self.publisher.publish(
                    envelope, exchange=self.publisher.topology.commands, routing_key=key
                )
            except (ContractError, ValueError):
                raise  # the message itself is wrong: no retry can fix it
            except Exception as exc:  # every transport failure: connection, channel, nack, return
                delay = min(self._max_s, self._initial_s * 2 ** min(attempt - 1, 10))
                log.warning(
                    "sdk.publish_retry",
                    msg_type=envelope.type,
                    message_id=str(envelope.id),
                    attempt=attempt,
                    delay_s=delay,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await self.clock.sleep(delay)
                continue
            if attempt > 1:
                log.info("sdk.publish_recovered", msg_type=envelope.type, attempt=attempt)
            return

    def deliver_soon(self, envelope: Envelope[Any]) -> asyncio.Task[None]:
        """Deliver in the background; handed to the publisher in the order of these calls."""
        task = asyncio.create_task(self.deliver(envelope), name=f"deliver:{envelope.type}")
        self._pending.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sdk.publish_dropped", error=str(task.exception()))

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Wait until every background delivery is confirmed."""
        while self._pending:
            await asyncio.wait(set(self._pending))

    def cancel_all(self) -> None:
        for task in list(self._pending):
            task.cancel()
