"""Batches: a single-active worker decides over many messages at once.

Each message of the batch waits on a future; the batch handler answers, per failed item,
the exception it failed with, and only those items are retried or dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from broker.hold import LeftUnacked
from broker.router import BatchHandler, Incoming

log = structlog.get_logger(__name__)

Item = tuple[Incoming[Any], "asyncio.Future[None]"]
# runs the batch handler, holding it while the store is down (raises LeftUnacked on stop)
Runner = Callable[[BatchHandler, Sequence[Incoming[Any]]], Awaitable[Mapping[int, BaseException]]]


class Batcher:
    def __init__(self, handler: BatchHandler, run: Runner, *, max_batch: int) -> None:
        self.handler = handler
        self.run = run
        self.max_batch = max_batch
        self.queue: asyncio.Queue[Item] = asyncio.Queue()

    async def submit(self, incoming: Incoming[Any]) -> None:
        """Queue it for the batch handler; returns when its batch is done, or raises its failure."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.queue.put((incoming, future))
        await future

    async def loop(self) -> None:
        while True:
            first = await self.queue.get()
            items = [first]
            while len(items) < self.max_batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            try:
                await self._run(items)
            except BaseException as exc:  # nobody may wait forever on a batch
                for _, future in items:
                    if not future.done():
                        future.set_exception(
                            LeftUnacked() if not isinstance(exc, Exception) else exc
                        )
                raise

    async def _run(self, items: Sequence[Item]) -> None:
        failures: Mapping[int, BaseException]
        try:
            failures = await self.run(self.handler, [incoming for incoming, _ in items])
        except LeftUnacked as exc:
            failures = dict.fromkeys(range(len(items)), exc)
        except Exception as exc:
            log.warning("batch.failed", size=len(items), error=str(exc), exc_info=True)
            failures = dict.fromkeys(range(len(items)), exc)
        for index, (_, future) in enumerate(items):
            if future.done():
                continue
            failure = failures.get(index)
            if failure is None:
                future.set_result(None)
            else:
                future.set_exception(failure)
