"""The floor's responder, one OS process: consume a request, publish a confirmed reply, ack.

python -m workers.bench.floor_responder --url URL --request Q --reply Q
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aio_pika
from aio_pika.abc import AbstractIncomingMessage


async def respond(url: str, request: str, reply: str, prefetch: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connection = await aio_pika.connect_robust(
        url, client_properties={"connection_name": f"rally-bench:floor-responder:{request}"}
    )
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        exchange = channel.default_exchange

        async def on_request(message: AbstractIncomingMessage) -> None:
            answer = aio_pika.Message(
                message.body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                correlation_id=message.correlation_id,
            )
            await exchange.publish(answer, routing_key=reply)  # confirmed before the ack
            await message.ack()

        queue = await channel.get_queue(request, ensure=False)
        await queue.consume(on_request)
        await stop.wait()
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.bench.floor_responder")
    parser.add_argument("--url", required=True)
    parser.add_argument("--request", required=True)
    parser.add_argument("--reply", required=True)
    parser.add_argument("--prefetch", type=int, default=256)
    args = parser.parse_args()
    asyncio.run(respond(args.url, args.request, args.reply, args.prefetch))


if __name__ == "__main__":
    main()
