"""When each agent was last heard from, and the load it reported.

Heartbeats are not events (the registry keeps them in memory), so the history
cannot say when an agent last beat. The dashboard listens for copies instead,
through a broker tap (``broker.tap``) on the queue ``Topology.dashboard_tap_queue``
declares: private, bound to the commands exchange for ``registry.Heartbeat``,
consumed without acks and bounded. It takes nothing from the registry's queue
and publishes nothing.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from broker.connection import BrokerConnection
from broker.queue_reader import QueuedMessage
from broker.tap import Tap
from broker.topology import DASHBOARD_TAP_MAX_LENGTH
from contracts import ContractError, Heartbeat, decode
from workers.runtime.clock import Clock

MAX_AGENTS = 10_000
TAP_MAX_LENGTH = DASHBOARD_TAP_MAX_LENGTH


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
        spec = conn.topology.dashboard_tap_queue(uuid.uuid4().hex[:12])
        self.queue_name = spec.name
        self._tap = Tap(conn, spec, self._on_message)

    async def start(self) -> HeartbeatTap:
        await self._tap.start()
        return self

    async def stop(self) -> None:
        await self._tap.stop()

    def _on_message(self, message: QueuedMessage) -> None:
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
