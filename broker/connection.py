"""One robust connection per process, named so operators can tell replicas apart.

aio-pika restores only the channels, queues and consumers it still holds
references to, so this class keeps them.

With several nodes in RALLY_AMQP_URL (broker/nodes.py) a process starts at a
random node, so a fleet's connections spread over the cluster, and tries the
others in the order written, wrapping around, until one answers. Once
connected, every reconnection attempt goes to the next node: a node that is
lost is not asked again before the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from yarl import URL

from broker.errors import BrokerUnavailable
from broker.settings import BrokerSettings
from broker.topology import Topology

log = structlog.get_logger(__name__)

# RabbitMQ 3.10+: a new quorum queue's leader goes to the node leading the fewest
LEADER_LOCATOR = "balanced"


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


# aio-pika calls this (name-mangled) method for every connection attempt, the first and
# each reconnection; ClusterConnection wraps it to pick the node. Fail loudly at import if
# an aio-pika upgrade renames it, rather than silently reconnecting to one node forever.
_ATTEMPT = "_RobustConnection__connect_transport"
if not hasattr(aio_pika.RobustConnection, _ATTEMPT):  # pragma: no cover - aio-pika upgrade
    raise ImportError(f"aio_pika.RobustConnection has no {_ATTEMPT}: cluster failover needs it")


class ClusterConnection(aio_pika.RobustConnection):
    """A robust connection that moves to the next node at every attempt after the first."""

    def __init__(self, url: URL, *args: Any, nodes: tuple[str, ...], start: int, **kw: Any):
        super().__init__(url, *args, **kw)
        self.nodes = tuple(URL(n) for n in nodes)
        self.index = start
        self.attempts = 0

    async def _RobustConnection__connect_transport(self) -> None:
        if self.attempts:
            self.index = (self.index + 1) % len(self.nodes)
            self.url = self.nodes[self.index]
            log.info("broker.reconnecting", node=_where(self.url))
        self.attempts += 1
        await getattr(super(), _ATTEMPT)()
        log.info("broker.connected", node=_where(self.url), attempt=self.attempts)

    @property
    def node(self) -> str:
        """host:port of the node this connection uses (or tries) now."""
        return _where(self.url)


def _where(url: URL) -> str:
    return f"{url.host}:{url.port}"


def first_node(count: int) -> int:
    """Where a process starts: anywhere, so a fleet's connections spread over the cluster."""
    return random.randrange(count) if count > 1 else 0


class BrokerConnection:
    def __init__(self, settings: BrokerSettings, *, role: str, replica: str | None = None):
        self.settings = settings
        # on a cluster, new quorum queues get its size and leaders spread over its nodes
        clustered = settings.quorum_initial_group_size is not None
        self.topology = Topology(
            settings.namespace,
            quorum_size=settings.quorum_initial_group_size,
            leader_locator=LEADER_LOCATOR if clustered else None,
            inbox_type=settings.inbox_queue_type,
        )
        self.name = connection_name(role, replica)
        self._conn: AbstractRobustConnection | None = None
        # strong references: aio-pika re-declares and re-consumes only what is alive
        self._channels: list[AbstractChannel] = []
        self._queues: dict[str, AbstractQueue] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._conn is None:
            raise BrokerUnavailable("not connected: call connect() first")
        return self._conn

    async def connect(self, *, timeout: float = 10.0) -> BrokerConnection:
        """Connect to the first node that answers (see the module's docstring for the order)."""
        nodes = self.settings.amqp_nodes
        start = first_node(len(nodes))
        failures: list[str] = []
        for step in range(len(nodes)):
            index = (start + step) % len(nodes)
            try:
                self._conn = await self._connect_to(nodes, index, timeout)
                break
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
                failures.append(f"{redact(nodes[index])} ({type(exc).__name__}: {exc})")
        else:
            raise BrokerUnavailable(
                f"cannot reach RabbitMQ at {'; '.join(failures)}; "
                "start it (`make services`) or set RALLY_AMQP_URL"
            )
        log.debug("broker.connected", connection=self.name, node=self.node)
        return self

    async def _connect_to(
        self, nodes: tuple[str, ...], index: int, timeout: float
    ) -> ClusterConnection:
        url = nodes[index]
        conn = ClusterConnection(
            URL(url),
            nodes=nodes,
            start=index,
            client_properties={"connection_name": self.name},
            # a heartbeat written in the URL (?heartbeat=2) wins; None leaves it be
            heartbeat=None if "heartbeat=" in url else self.settings.amqp_heartbeat_s,
        )
        try:
            await conn.connect(timeout=timeout)
        except BaseException:
            await conn.close()
            raise
        return conn

    @property
    def node(self) -> str:
        """host:port of the broker node in use (or being tried, while reconnecting)."""
        conn = self._conn
        return conn.node if isinstance(conn, ClusterConnection) else ""

    def is_up(self) -> bool:
        """Connected now: False from the moment the connection is lost until it is back."""
        conn = self._conn
        return conn is not None and not conn.is_closed and conn.connected.is_set()

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

    def retire(self, channel: AbstractChannel, *, after_s: float) -> None:
        """Forget ``channel`` (not restored after a reconnect) and close it in ``after_s``:
        what is in flight on it has that long to be confirmed."""
        with contextlib.suppress(ValueError):
            self._channels.remove(channel)

        async def close_later() -> None:
            await asyncio.sleep(after_s)
            with contextlib.suppress(Exception):  # already closed with its connection
                await channel.close()

        task = asyncio.create_task(close_later(), name="channel-retired")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def keep(self, queue: AbstractQueue) -> AbstractQueue:
        self._queues[queue.name] = queue
        return queue

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()  # closed with the connection
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
