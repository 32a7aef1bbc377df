"""A scripted stand-in for the workers: see what agents and clients send, tell them things.

``Observer`` binds a test queue to the namespace's commands exchange (every
route the SDK sends on) and records each decoded envelope with its AMQP
message id (a bundle's members one by one), so tests can assert on what
arrived, in what order, how often.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from broker.connection import BrokerConnection
from broker.declare import declare_queue
from contracts import Envelope, decode
from tests.support.amqp import unbundle

Match = Callable[[Envelope[Any]], bool]


class Observer:
    def __init__(self, conn: BrokerConnection) -> None:
        self.conn = conn
        self.seen: list[Envelope[Any]] = []
        self.message_ids: list[str] = []  # AMQP message id per delivery, duplicates kept
        self._changed = asyncio.Condition()

    async def start(self) -> Observer:
        spec = self.conn.topology.work_queue(
            "test", command_keys=("tasks.#", "registry.#", "allocator.#")
        )
        channel = await self.conn.channel(confirms=False)
        queue = await declare_queue(self.conn, channel, spec)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with self._changed:
            for taken in unbundle(message):  # a bundle counts as the messages in it
                self.seen.append(decode(taken.body))
                self.message_ids.append(taken.message_id or "")
            self._changed.notify_all()

    def of(self, type_name: str, match: Match | None = None) -> list[Envelope[Any]]:
        return [e for e in self.seen if e.type == type_name and (match is None or match(e))]

    async def wait_for(
        self, type_name: str, match: Match | None = None, *, count: int = 1, timeout: float = 10
    ) -> list[Envelope[Any]]:
        """The first ``count`` envelopes of this type (and match), waiting for them to arrive."""

        async def enough() -> list[Envelope[Any]]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.of(type_name, match)) >= count)
                return self.of(type_name, match)[:count]

        try:
            return await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            got = [e.type for e in self.seen]
            raise AssertionError(f"wanted {count} {type_name}, saw {got}") from None


def task_of(task_id: Any) -> Match:
    return lambda e: getattr(e.payload, "task_id", None) == task_id


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 -- polls state the SDK keeps, no event to await
            await asyncio.sleep(0.02)
