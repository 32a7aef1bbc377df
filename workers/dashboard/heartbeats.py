"""When each agent was last heard from, and the load it reported.

Heartbeats are not events (the registry keeps them in memory), so the history
cannot say when an agent last beat. The dashboard listens for copies instead:
a private, exclusive queue bound to the commands exchange for
``registry.Heartbeat``, consumed without acks. It takes nothing from the
registry's queue and publishes nothing; the queue disappears with the
dashboard's connection, and a bounded length keeps a stalled dashboard from
piling up messages in the broker.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from broker.connection import BrokerConnection
from contracts import ContractError, Heartbeat, decode
from workers.runtime.clock import Clock

log = structlog.get_logger(__name__)

MAX_AGENTS = 10_000
TAP_MAX_LENGTH = 10_000


@dataclass(frozen=True, slots=True)
class Beat:
    at: datetime  # when the dashboard received it (its clock, not the agent's claim)
    load: int


class HeartbeatBook:
    """The latest heartbeat per agent id; the least recently heard are forgotten past a bound."""

    def __init__(self, max_agents: int = MAX_AGENTS) -> None:
        self.max_agents = max_agents
        self._beats: OrderedDict[str, Beat] = OrderedDict()

    def record(self, agent_id: str, load: int, at: datetime) -> None:
        self._beats[agent_id] = Beat(at, load)
        self._beats.move_to_end(agent_id)
        while len(self._beats) > self.max_agents:
            self._beats.popitem(last=False)

    def get(self, agent_id: str) -> Beat | None:
        return self._beats.get(agent_id)

    def __len__(self) -> int:
        return len(self._beats)


class HeartbeatTap:
    """Feeds a :class:`HeartbeatBook` from copies of the heartbeats on the broker."""

    def __init__(self, conn: BrokerConnection, book: HeartbeatBook, clock: Clock) -> None:
        self.conn = conn
        self.book = book
        self.clock = clock
        self.ignored = 0  # copies that did not decode as a Heartbeat (the registry deals with them)
        self.queue_name = f"{conn.topology.namespace}.dashboard.{uuid.uuid4().hex[:12]}"
        # aio-pika objects, typed Any: only broker/ imports aio_pika. Held here, not by the
        # connection, so a tap that failed to start is not restored after a reconnect.
        self._channel: Any = None
        self._queue: Any = None

    async def start(self) -> HeartbeatTap:
        self._channel = await self.conn.connection.channel(publisher_confirms=False)
        await self._channel.set_qos(prefetch_count=256)
        self._queue = queue = await self._channel.declare_queue(
            self.queue_name,
            durable=False,
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": TAP_MAX_LENGTH, "x-overflow": "drop-head"},
        )
        await queue.bind(self.conn.topology.commands, routing_key="registry.Heartbeat")
        await queue.consume(self._on_message, no_ack=True)
        log.debug("dashboard.heartbeat_tap_started", queue=self.queue_name)
        return self

    async def _on_message(self, message: Any) -> None:
        try:
            envelope = decode(bytes(message.body), max_bytes=self.conn.settings.max_message_bytes)
        except ContractError:
            self.ignored += 1
            return
        payload = envelope.payload
        if not isinstance(payload, Heartbeat):
            self.ignored += 1
            return
        self.book.record(payload.agent_id, payload.load, self.clock.now())
