"""A test worker whose handler fails on purpose, and the bad messages that reach it."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import contracts as c
from broker.connection import BrokerConnection
from broker.errors import Reject, Retry
from broker.router import Incoming, Router
from workers.dlq.transport import queue_depths


def envelope(message: c.Message, /, **changes: Any) -> dict[str, Any]:
    """A valid envelope as a dict, to break on purpose before sending it raw."""
    wire: dict[str, Any] = json.loads(c.Envelope.wrap(message, sender="client-1").model_dump_json())
    wire.update(changes)
    return wire


def raw(wire: dict[str, Any]) -> bytes:
    return json.dumps(wire).encode()


class TestWorker:
    """SubmitTask handler: capability ``boom`` raises, ``wait`` retries, ``refuse`` rejects.

    ``fixed`` turns every failure off (the deploy of a fix); ``seen`` counts each
    message id handled successfully, to prove "exactly once".
    """

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.fixed = False
        self.seen: Counter[str] = Counter()
        self.router = Router()
        self.router.add(c.SubmitTask, self.handle)
        self.router.add(c.RegisterAgent, self.handle)

    async def handle(self, incoming: Incoming[Any]) -> None:
        payload = incoming.payload
        capability = getattr(payload, "capability", "")
        if not self.fixed:
            if capability == "boom":
                raise ValueError("boom: the parser chokes on this input")
            if capability == "wait":
                raise Retry("waiting for a gpu", after=0.01)
            if capability == "refuse":
                raise Reject("the task was already cancelled")
        self.seen[incoming.message_id] += 1


def authorize(incoming: Incoming[Any]) -> None:
    if incoming.envelope.sender == "mallory":
        raise Reject("mallory may not submit tasks", reason="security")


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float = 15.0) -> None:
    """Poll an async condition; fail the test with a clear message past ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


async def dlq_depth(broker: BrokerConnection, queue: str) -> int:
    """Messages waiting in ``queue``; 0 while it does not exist yet."""
    found = await queue_depths(broker, [queue])
    return found.get(queue, 0)
