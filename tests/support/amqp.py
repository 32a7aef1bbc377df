"""Small helpers for tests that look at queues directly."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from broker.connection import BrokerConnection


async def take(
    conn: BrokerConnection, queue: str, count: int, *, timeout: float = 10.0
) -> list[AbstractIncomingMessage]:
    """Get (and ack) ``count`` messages from ``queue``, waiting up to ``timeout``."""
    channel = await conn.connection.channel(publisher_confirms=False)
    got: list[AbstractIncomingMessage] = []
    deadline = time.monotonic() + timeout
    try:
        q = await channel.get_queue(queue, ensure=False)
        while len(got) < count and time.monotonic() < deadline:
            message = await q.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.02)
                continue
            got.append(message)
    finally:
        await channel.close()
    return got


async def depth(conn: BrokerConnection, queue: str) -> int:
    channel = await conn.connection.channel(publisher_confirms=False)
    try:
        q = await channel.declare_queue(queue, passive=True)
        return int(q.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def publish_bytes(
    conn: BrokerConnection, exchange: str, routing_key: str, body: bytes, **props: Any
) -> None:
    """Publish raw bytes, bypassing the contracts (to send what a broken client would)."""
    channel = await conn.connection.channel(publisher_confirms=True)
    try:
        ex = await channel.get_exchange(exchange, ensure=False)
        await ex.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props),
            routing_key,
        )
    finally:
        await channel.close()


async def eventually(predicate: Any, *, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
