"""What a worker service gets from the runner, and what it must offer back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from broker.connection import BrokerConnection
from broker.publisher import Publisher
from workers.runtime.clock import Clock, SystemClock
from workers.runtime.settings import WorkerSettings
from workers.store.base import EventStore


@dataclass(frozen=True)
class ServiceContext:
    conn: BrokerConnection
    publisher: Publisher
    store: EventStore
    settings: WorkerSettings
    replica: str
    clock: Clock = field(default_factory=SystemClock)


class Service(Protocol):
    """One worker's consumers and background loops in one replica."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
