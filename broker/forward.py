"""Move a registry command to the shard that owns its slot: forward a copy, unbind old queues.

**Forwarding.** A command that reached a worker which does not own it (an unslotted key from
an agent that does not hash, or a message left in a queue whose slots moved) is published
again to the commands exchange under the right routing key: the same envelope (message id,
correlation id, payload), acting for its first sender. The copy goes out under the worker's
own (service) user with ``x-rally-original-user-id`` pinned to the principal the broker
vouched for on the way in — never a header the sender wrote — so on arrival it may do exactly
what the first sender could, and nothing more. ``x-rally-forwards`` counts the hops: shards
started with different counts could otherwise pass a message round for ever.

**Queues no shard runs.** When the registry's shard count goes down, the queues of the shards
that no longer run keep their slot bindings, and would take a copy of every command for those
slots with nobody to read it. :func:`unbind_left_queues` removes those bindings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
import structlog

from broker.connection import BrokerConnection
from broker.delivery import int_header
from broker.publisher import Publisher
from broker.router import Incoming
from contracts.headers import FORWARDS, ORIGINAL_USER_ID

log = structlog.get_logger(__name__)


def forwards_of(headers: Mapping[str, Any]) -> int:
    """How many times this copy has been forwarded already (0: as its sender sent it)."""
    return int_header(headers.get(FORWARDS), 0)


async def forward(
    publisher: Publisher, incoming: Incoming[Any], *, exchange: str, routing_key: str
) -> None:
    """Publish ``incoming`` again to ``exchange``/``routing_key``, acting for its first sender.

    Returns once the broker confirmed the copy (the caller then lets its delivery be acked);
    raises as :meth:`Publisher.publish` does, so the consumer retries or dead-letters.
    """
    headers = {
        # the principal the consumer established (broker user, or the first sender a service
        # user vouched for); "" keeps an anonymous sender anonymous
        ORIGINAL_USER_ID: incoming.principal or "",
        FORWARDS: forwards_of(incoming.headers) + 1,
    }
    await publisher.publish(
        incoming.envelope, exchange=exchange, routing_key=routing_key, headers=headers
    )


@dataclass(frozen=True, slots=True)
class LeftQueue:
    """A queue some earlier configuration declared, and the bindings it must no longer hold."""

    name: str
    bindings: tuple[tuple[str, str], ...]  # (exchange, routing key)


async def unbind_left_queues(conn: BrokerConnection, queues: Iterable[LeftQueue]) -> list[str]:
    """Unbind each queue, in order, up to the first that does not exist; answers those found.

    A shard count ``m`` declares the queues of shards 1..m-1 together, so past the first
    missing one there is nothing to find: one passive declare where nothing was left (on a
    channel of its own, as a missing queue closes it). A queue found is only unbound, never
    deleted: quorum queues cannot be deleted "if empty", and a message routed to it just
    before the unbind would be lost with it. Deleting it is the operator's, once it is empty.
    """
    found: list[str] = []
    for queue in queues:
        channel = await conn.connection.channel(publisher_confirms=False)
        try:
            try:
                declared = await channel.declare_queue(queue.name, passive=True, robust=False)
            except aio_pika.exceptions.ChannelClosed:
                break  # never declared, or deleted by the operator with those above it
            for exchange, key in queue.bindings:
                await declared.unbind(exchange, routing_key=key)  # a no-op where never bound
            waiting = int(declared.declaration_result.message_count or 0)
            found.append(queue.name)
            log.warning("registry.left_queue_unbound", queue=queue.name, messages=waiting)
        finally:
            if not channel.is_closed:
                await channel.close()
    return found
