"""The floor: what raw aio-pika reaches on this broker, with no rallypoint in the way.

Three measures, on durable quorum queues (as rallypoint's work queues are),
persistent messages and publisher confirms:

- publish: N confirmed publishes, pipelined (``window`` awaiting their confirm);
- consume: those N messages consumed with a manual ack each;
- round trip: a requester publishes a request, a responder in its own OS
  process (a worker, as in request → worker → reply) consumes it, publishes a
  confirmed reply and acks; the requester consumes the replies. Saturated
  with ``window`` round trips in flight, then one at a time for latency.

Every queue is named ``<prefix>.floor.*`` and deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    FieldValue,
)

from workers.bench.pacing import pipelined
from workers.bench.stats import percentile, rate
from workers.runtime.procs import stop_process

log = structlog.get_logger(__name__)

QUEUE_TYPE = "quorum"
BODY_BYTES = 512  # about the size of a rallypoint SubmitTask envelope
QUEUE_ARGUMENTS: dict[str, FieldValue] = {"x-queue-type": QUEUE_TYPE}


@dataclass(frozen=True, slots=True)
class FloorRun:
    publish_msgs_per_s: float
    consume_msgs_per_s: float
    roundtrip_msgs_per_s: float  # round trips per second (one request and one reply each)
    p50_ms: float
    p99_ms: float
    p50_ms_one_in_flight: float


@dataclass(frozen=True, slots=True)
class FloorOptions:
    messages: int = 10_000
    window: int = 500
    prefetch: int = 256
    sequential: int = 200


def persistent(body: bytes, correlation_id: str | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, correlation_id=correlation_id
    )


class FloorQueues:
    """The floor's queues for one run: declared on entry, deleted on exit."""

    def __init__(self, prefix: str) -> None:
        self.load = f"{prefix}.floor.load"
        self.request = f"{prefix}.floor.request"
        self.reply = f"{prefix}.floor.reply"

    @property
    def names(self) -> tuple[str, ...]:
        return (self.load, self.request, self.reply)

    async def declare(self, channel: AbstractChannel) -> None:
        for name in self.names:
            await channel.declare_queue(name, durable=True, arguments=QUEUE_ARGUMENTS)

    async def delete(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel(publisher_confirms=False)
        try:
            for name in self.names:
                await channel.queue_delete(name)
        finally:
            await channel.close()


async def measure_publish(channel: AbstractChannel, queue: str, options: FloorOptions) -> float:
    body = os.urandom(BODY_BYTES // 2).hex().encode()
    exchange = channel.default_exchange

    async def publish(_: int) -> None:
        await exchange.publish(persistent(body), routing_key=queue)

    started = time.perf_counter()
    await pipelined(options.messages, options.window, publish)
    return rate(options.messages, time.perf_counter() - started)


async def measure_consume(
    connection: AbstractRobustConnection, queue: str, options: FloorOptions
) -> float:
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=options.prefetch)
    done = asyncio.Event()
    seen = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal seen
        await message.ack()
        seen += 1
        if seen >= options.messages:
            done.set()

    try:
        q = await channel.get_queue(queue, ensure=False)
        started = time.perf_counter()
        tag = await q.consume(on_message)
        await asyncio.wait_for(done.wait(), timeout=max(60.0, options.messages / 200))
        elapsed = time.perf_counter() - started
        await q.cancel(tag)
    finally:
        await channel.close()
    return rate(options.messages, elapsed)


class Requester:
    """Publishes requests, matches replies by correlation id, times each round trip."""

    def __init__(self, channel: AbstractChannel, queues: FloorQueues) -> None:
        self.channel = channel
        self.queues = queues
        self.body = os.urandom(BODY_BYTES // 2).hex().encode()
        self._waiting: dict[str, tuple[float, asyncio.Future[float]]] = {}
        self._consuming: tuple[AbstractQueue, str] | None = None

    async def start(self) -> None:
        reply = await self.channel.get_queue(self.queues.reply, ensure=False)
        self._consuming = (reply, await reply.consume(self._on_reply))

    async def stop(self) -> None:
        """Stop consuming first: a queue deleted under a consumer makes the broker complain."""
        if self._consuming is not None:
            queue, tag = self._consuming
            self._consuming = None
            await queue.cancel(tag)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        entry = self._waiting.pop(message.correlation_id or "", None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(time.perf_counter() - entry[0])

    async def round_trip(self, i: int) -> float:
        """Seconds from publishing the request to consuming its reply."""
        correlation = f"r{i}-{uuid.uuid4().hex[:8]}"
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = (time.perf_counter(), waiter)
        await self.channel.default_exchange.publish(
            persistent(self.body, correlation_id=correlation), routing_key=self.queues.request
        )
        return await asyncio.wait_for(waiter, timeout=60.0)


async def measure_round_trips(
    requester: Requester, options: FloorOptions
) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def one(i: int) -> None:
        latencies.append(await requester.round_trip(i))

    started = time.perf_counter()
    await pipelined(options.messages, options.window, one)
    return rate(options.messages, time.perf_counter() - started), latencies


def spawn_responder(url: str, queues: FloorQueues, prefetch: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "workers.bench.floor_responder", "--url", url]
    cmd += ["--request", queues.request, "--reply", queues.reply, "--prefetch", str(prefetch)]
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
    )


@contextlib.asynccontextmanager
async def responder_process(url: str, queues: FloorQueues, prefetch: int) -> AsyncIterator[None]:
    """The responder in its own process, as a worker would be; stopped on exit."""
    proc = spawn_responder(url, queues, prefetch)
    try:
        yield
    finally:
        stop_process(proc)


async def run_floor(url: str, options: FloorOptions, prefix: str) -> FloorRun:
    """One run of all three measures on fresh queues."""
    queues = FloorQueues(prefix)
    connection = await aio_pika.connect_robust(
        url, client_properties={"connection_name": f"rally-bench:floor:{prefix}"}
    )
    try:
        channel = await connection.channel(publisher_confirms=True)
        await queues.declare(channel)
        publish = await measure_publish(channel, queues.load, options)
        consume = await measure_consume(connection, queues.load, options)
        reply_channel = await connection.channel(publisher_confirms=True)
        await reply_channel.set_qos(prefetch_count=options.prefetch)
        requester = Requester(reply_channel, queues)
        await requester.start()
        try:
            async with responder_process(url, queues, options.prefetch):
                await requester.round_trip(-1)  # the responder is up once one round trip returns
                for i in range(min(50, options.messages)):
                    await requester.round_trip(-2 - i)  # warm-up
                trips, latencies = await measure_round_trips(requester, options)
                one_at_a_time = [await requester.round_trip(i) for i in range(options.sequential)]
        finally:
            await requester.stop()
        return FloorRun(
            publish_msgs_per_s=publish,
            consume_msgs_per_s=consume,
            roundtrip_msgs_per_s=trips,
            p50_ms=percentile(latencies, 50) * 1000,
            p99_ms=percentile(latencies, 99) * 1000,
            p50_ms_one_in_flight=percentile(one_at_a_time, 50) * 1000,
        )
    finally:
        try:
            await queues.delete(connection)
        finally:
            await connection.close()
