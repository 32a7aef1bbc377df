"""Streams the allocator's view holds at an event it cannot decode: the record, the log
line, the metric, and the note ``rally status`` reads from the store.

Why hold rather than skip or end the task: an unreadable event is most often a
newer release's (a rolling upgrade) or one an upcaster will read; ending its task
would lose work a newer replica could place, skipping it would place a task on a
state that is not its own. Held, the stream waits visibly — one task, agent or
resource, never the whole fleet — and is taken again from its first event once it
reads (checked at start-up and every ``RETRY_S`` while active).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Gauge

from broker.metrics import LABELS, REGISTRY
from workers.store.base import EventStore

if TYPE_CHECKING:
    from workers.allocator.projection import Projection

log = structlog.get_logger(__name__)

STATUS_NAME = "allocator-held"  # the store snapshot `rally status` reads
RETRY_S = 30.0

HELD_STREAMS = Gauge(
    "rally_projection_held_streams",
    "Streams a projection stopped reading at an event it cannot decode (see rally status).",
    LABELS,
    registry=REGISTRY,
)


@dataclass(slots=True)
class Held:
    stream: str
    position: int  # of the first event that could not be decoded
    type: str
    schema_version: int
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "position": self.position,
            "type": self.type,
            "schema_version": self.schema_version,
            "reason": self.reason,
        }


def held_changed(view: Projection, held: Held, what: str) -> None:
    """Logged where it happens: ``held`` (an error), ``resumed`` or ``ended``."""
    if what == "held":
        log.error(
            "allocator.event_unreadable",
            stream=held.stream,
            position=held.position,
            type=held.type,
            schema_version=held.schema_version,
            reason=held.reason,
            held=len(view.held),
        )
    else:
        log.warning(f"allocator.hold_{what}", stream=held.stream, position=held.position)


async def publish_holds(store: EventStore, view: Projection, replica: str) -> None:
    """The metric, and the list `rally status` shows (saved as of the view's position)."""
    HELD_STREAMS.labels("allocator", replica).set(len(view.held))
    note = {
        "worker": "allocator",
        "replica": replica,
        "position": view.position,
        "held": [h.as_json() for h in view.held.values()],
    }
    await store.save_snapshot(STATUS_NAME, view.position, note)


async def read_holds(store: EventStore) -> list[dict[str, Any]]:
    """What the active allocator last said it holds (for `rally status`)."""
    found = await store.load_snapshot(STATUS_NAME)
    if found is None:
        return []
    held = found[1].get("held")
    return list(held) if isinstance(held, list) else []
