"""A worker replica that takes one message and hangs in its handler: the SIGKILL target.

Run: python -m tests.support.stuck_worker <amqp_url> <namespace> <marker_file>
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import contracts as c
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.publisher import Publisher
from broker.router import Incoming, Router
from broker.settings import BrokerSettings


async def main(url: str, namespace: str, marker: Path) -> None:
    settings = BrokerSettings(amqp_url=url, namespace=namespace)
    conn = await BrokerConnection(settings, role="stuck", replica="0").connect()
    publisher = await Publisher(conn, sender="stuck").start()
    router = Router()

    @router.on(c.RegisterAgent)
    async def hang(msg: Incoming[c.RegisterAgent]) -> None:
        marker.write_text(msg.payload.agent_id)
        await asyncio.sleep(3600)

    spec = conn.topology.work_queue("registry")
    await Consumer(conn, spec, router, publisher, worker="stuck", replica="0", prefetch=1).start()
    marker.with_suffix(".ready").write_text("ready")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
