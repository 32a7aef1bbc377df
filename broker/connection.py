"""One robust connection per process, named so operators can tell replicas apart.

aio-pika restores only the channels, queues and consumers it still holds
references to, so this class keeps them.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection

from broker.errors import BrokerUnavailable
from broker.settings import BrokerSettings
from broker.topology import Topology

log = structlog.get_logger(__name__)


def connection_name(role: str, replica: str | None = None) -> str:
    parts = [role, replica or str(os.getpid()), socket.gethostname()]
    return "rally:" + ":".join(p for p in parts if p)


def redact(url: str) -> str:
    """The URL with its password hidden, for messages a user reads."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class BrokerConnection:
    def __init__(self, settings: BrokerSettings, *, role: str, replica: str | None = None):
        self.settings = settings
        self.topology = Topology(settings.namespace)
        self.name = connection_name(role, replica)
        self._conn: AbstractRobustConnection | None = None
        # strong references: aio-pika re-declares and re-consumes only what is alive
        self._channels: list[AbstractChannel] = []
        self._queues: dict[str, AbstractQueue] = {}

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._conn is None:
            raise BrokerUnavailable("not connected: call connect() first")
        return self._conn

    async def connect(self, *, timeout: float = 10.0) -> BrokerConnection:
        url = self.settings.amqp_url
        try:
            self._conn = await aio_pika.connect_robust(
                url,
                client_properties={"connection_name": self.name},
                # a heartbeat written in the URL (?heartbeat=2) wins; None leaves it be
                heartbeat=None if "heartbeat=" in url else self.settings.amqp_heartbeat_s,
                timeout=timeout,
            )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            raise BrokerUnavailable(
                f"cannot reach RabbitMQ at {redact(url)} ({type(exc).__name__}: {exc}); "
                "start it (`make services`) or set RALLY_AMQP_URL"
            ) from None
        log.debug("broker.connected", connection=self.name)
        return self

    async def channel(
        self, *, confirms: bool = True, prefetch: int | None = None
    ) -> AbstractChannel:
        channel = await self.connection.channel(
            publisher_confirms=confirms, on_return_raises=confirms
        )
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        self._channels.append(channel)
        return channel

    def keep(self, queue: AbstractQueue) -> AbstractQueue:
        self._queues[queue.name] = queue
        return queue

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed:
            await self._conn.close()
        self._channels.clear()
        self._queues.clear()

    async def __aenter__(self) -> BrokerConnection:
        if self._conn is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
