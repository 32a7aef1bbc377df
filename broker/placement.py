"""Where a new quorum queue's replicas and leader go, without breaking queues that exist.

RabbitMQ (3.10.8, checked) compares ``x-quorum-initial-group-size`` and
``x-queue-leader-locator`` on every redeclare like any other argument: a queue
created before a deployment named its cluster (or with another node count)
would fail with PRECONDITION_FAILED at the next start. Yet both only matter
when a queue is created. So a queue is first declared on a channel of its own;
if the broker says one of these two differs, the queue keeps what it was
created with and is declared with that. (A quorum queue's leader locator and
size can be changed later only by hand: ``rabbitmq-queues grow``/``shrink`` and
``rabbitmq-queues rebalance quorum``.)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import aio_pika

if TYPE_CHECKING:
    from broker.connection import BrokerConnection

PLACEMENT_ARGUMENTS = ("x-quorum-initial-group-size", "x-queue-leader-locator")
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<key>[^']+)'.*current is (?:none|the value '(?P<was>[^']*)'"
    r"|'(?P<old>[^']*)')"
)


def existing_placement(error: str) -> tuple[str, Any] | None:
    """(argument, the queue's value or None) from a PRECONDITION_FAILED about placement."""
    match = _INEQUIVALENT.search(error)
    if match is None or match["key"] not in PLACEMENT_ARGUMENTS:
        return None
    current = match["was"] if match["was"] is not None else match["old"]
    if current is None:
        return match["key"], None
    return match["key"], int(current) if current.isdigit() else current


async def placed_arguments(
    conn: BrokerConnection, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """The arguments to declare durable queue ``name`` with: ours when it is new, its
    own placement when it exists. Any other difference raises as a declare would.

    Asked with and without placement of our own: a process given one node must still
    declare the queues that a clustered deployment created with theirs.
    """
    args = dict(arguments)
    for _ in range(len(PLACEMENT_ARGUMENTS)):
        channel = await conn.connection.channel(publisher_confirms=False)
        try:
            await channel.declare_queue(name, durable=True, arguments=args, robust=False)
            return args
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            found = existing_placement(str(exc))
            if found is None:
                raise
            key, value = found
            if value is None:
                args.pop(key, None)
            else:
                args[key] = value
        finally:
            if not channel.is_closed:
                await channel.close()
    return args
