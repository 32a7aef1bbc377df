"""Helpers for the bench's smoke tests: does a queue or exchange still exist on the broker?"""

from __future__ import annotations

import aio_pika


async def queue_exists(amqp_url: str, name: str) -> bool:
    return await _exists(amqp_url, name, queue=True)


async def exchange_exists(amqp_url: str, name: str) -> bool:
    return await _exists(amqp_url, name, queue=False)


async def _exists(amqp_url: str, name: str, *, queue: bool) -> bool:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()  # a failed passive declare closes it
        try:
            if queue:
                await channel.declare_queue(name, passive=True)
            else:
                await channel.declare_exchange(name, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return False
        return True
    finally:
        await connection.close()
