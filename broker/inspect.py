"""Queue depth and consumer count without the management plugin: a passive declare each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika

from broker.connection import BrokerConnection


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    messages: int
    consumers: int
    exists: bool = True


async def queue_stats(conn: BrokerConnection, names: Sequence[str]) -> list[QueueStats]:
    out: list[QueueStats] = []
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        for name in names:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                # a missing queue closes the channel: note it and carry on with a fresh one
                out.append(QueueStats(name, 0, 0, exists=False))
                channel = await conn.connection.channel(publisher_confirms=False)
                continue
            result = queue.declaration_result
            out.append(
                QueueStats(name, int(result.message_count or 0), int(result.consumer_count or 0))
            )
    finally:
        if not channel.is_closed:
            await channel.close()
    return out
