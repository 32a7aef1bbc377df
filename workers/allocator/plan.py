"""One decision of the allocator: the events per stream and the effects, appended at once."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from uuid import UUID

from contracts import Event
from contracts.errors import MessageTooLarge
from workers.allocator.projection import RESOURCE_PREFIX
from workers.runtime.messages import Effect, outbox_message
from workers.store.base import OutboxMessage

SENDER = "allocator"


def resource_stream(name: str) -> str:
    return f"{RESOURCE_PREFIX}{name}"


@dataclass
class Plan:
    appends: dict[str, tuple[int, list[Event]]] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)  # effects encoded as planned
    direct: list[Effect] = field(default_factory=list)  # notices that record nothing
    placed: int = 0
    freed: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    ended: set[UUID] = field(default_factory=set)  # leases released/expired in this plan
    max_bytes: int = 1024 * 1024  # the largest message the broker side accepts
    # tasks to end instead of placing: (task, why its assignment cannot be delivered)
    undeliverable: list[tuple[UUID, str]] = field(default_factory=list)
    failed: dict[int, BaseException] = field(default_factory=dict)  # command index -> error
    waits: list[tuple[UUID, str]] = field(default_factory=list)  # wait reasons that changed

    def encode(self, effect: Effect) -> OutboxMessage:
        """The effect as the bytes the relay will send; too large raises MessageTooLarge."""
        row = outbox_message(effect, sender=SENDER)
        if len(row.body) > self.max_bytes:
            raise MessageTooLarge(
                f"{effect.payload.type_name()} message is {len(row.body)} bytes, "
                f"over the limit of {self.max_bytes}"
            )
        return row

    def add(self, stream: str, expected_version: int, event: Event) -> int:
        """Queue ``event`` on ``stream``; returns the version it will be recorded at."""
        expected, events = self.appends.setdefault(stream, (expected_version, []))
        events.append(event)
        return expected + len(events)

    @property
    def empty(self) -> bool:
        return not self.appends and not self.effects and not self.outbox


def next_version(plan: Plan, stream: str, current: int) -> int:
    """The version the next event planned on ``stream`` is recorded at."""
    pending = plan.appends.get(stream)
    return (pending[0] + len(pending[1]) if pending else current) + 1
