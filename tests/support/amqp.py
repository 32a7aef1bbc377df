"""Small helpers for tests that look at queues directly."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from broker.connection import BrokerConnection
from contracts import BUNDLE_CONTENT_TYPE, ContractError, decode_bundle


@dataclass(frozen=True)
class Taken:
    """A message got from a queue; a bundle's members are taken one by one, like messages."""

    body: bytes
    message_id: str | None
    type: str | None
    correlation_id: str | None
    headers: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    app_id: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    content_type: str | None = None
    bundled: bool = False


def unbundle(message: AbstractIncomingMessage) -> list[Taken]:
    """The messages a delivery carries: itself, or each member of a bundle."""
    headers = dict(message.headers or {})
    common: dict[str, Any] = {
        "user_id": message.user_id,
        "app_id": message.app_id,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
    }
    try:
        members = decode_bundle(message.body) if message.content_type == BUNDLE_CONTENT_TYPE else []
    except ContractError:
        members = []  # a broken bundle (say, a dead letter) is taken as it is
    if not members:
        return [
            Taken(
                message.body,
                message.message_id,
                message.type,
                message.correlation_id,
                headers,
                content_type=message.content_type,
                **common,
            )
        ]
    return [
        Taken(
            m.body,
            m.message_id,
            m.type,
            m.correlation_id,
            {**headers, **m.headers},
            content_type="application/json",
            bundled=True,
            **common,
        )
        for m in members
    ]


async def take(
    conn: BrokerConnection, queue: str, count: int, *, timeout: float = 10.0
) -> list[Taken]:
    """Get (and ack) ``count`` messages from ``queue``, waiting up to ``timeout``.

    A bundle counts as the messages in it (``Taken.bundled`` says which came so).
    """
    channel = await conn.connection.channel(publisher_confirms=False)
    got: list[Taken] = []
    deadline = time.monotonic() + timeout
    try:
        q = await channel.get_queue(queue, ensure=False)
        while len(got) < count and time.monotonic() < deadline:
            message = await q.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.02)
                continue
            got.extend(unbundle(message))
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


async def declares_with(conn: BrokerConnection, name: str, arguments: dict[str, Any]) -> bool:
    """Does durable queue ``name`` take these arguments (creating it if it is new)?

    AMQP cannot read a queue's arguments back: a redeclare on a channel of its own is the
    only way to ask (RabbitMQ refuses a difference with PRECONDITION_FAILED).
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
