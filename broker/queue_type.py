"""A queue keeps the type it was created with: an earlier release's quorum inbox stays quorum.

RabbitMQ refuses to redeclare a queue with another ``x-queue-type``
(PRECONDITION_FAILED, and the channel closes). Inboxes are now classic queues
(docs/protocol.md, "Inboxes"); an agent's inbox created by an earlier release as
a quorum queue still holds its assignments, so it is declared as it is: first
with the new arguments on a channel of its own, and if the broker says the queue
is of the earlier type, with the earlier arguments. It changes type only when it
is deleted (it expires 24 h after its agent stops using it, or an operator
deletes it while the agent is away), and is then created anew as classic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aio_pika

if TYPE_CHECKING:
    from broker.connection import BrokerConnection


async def declares_with(conn: BrokerConnection, name: str, arguments: dict[str, Any]) -> bool:
    """Does durable queue ``name`` take these arguments (creating it if it is new)?

    RabbitMQ names the first argument that differs, not always the type (a quorum queue
    asked for ``x-queue-version`` fails on that), so the answer is a declare, not a parse.
    """
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments, robust=False)
        return True
    except aio_pika.exceptions.ChannelPreconditionFailed:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()


async def kept_type(
    conn: BrokerConnection, name: str, arguments: dict[str, Any], earlier: dict[str, Any] | None
) -> dict[str, Any]:
    """``arguments`` for a new queue or one declared so; ``earlier`` for one an earlier
    release created with those. Any other difference is returned as it is, for the real
    declare to fail on with the broker's own words."""
    if earlier is None or await declares_with(conn, name, arguments):
        return arguments
    return earlier if await declares_with(conn, name, earlier) else arguments
