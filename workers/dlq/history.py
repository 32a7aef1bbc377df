"""Every replay and purge goes into the history, with who did it.

Stream ``deadletter-<id>``, one per dead letter, so `rally events dump --stream
deadletter-` shows every operator action on dead letters, and one dead
letter's story reads in order.
"""

from __future__ import annotations

import getpass
import socket
from typing import Protocol
from uuid import uuid4

from contracts import Event
from workers.store import EventStore, Metadata, NewEvent

STREAM_PREFIX = "deadletter-"


def stream_of(dead_letter_id: str) -> str:
    return f"{STREAM_PREFIX}{dead_letter_id}"


def operator(by: str | None = None) -> str:
    """Who is acting: ``--by`` if given, else the OS user at this host."""
    if by and by.strip():
        return by.strip()[:200]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container), no env
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:200]


class History(Protocol):
    async def record(self, dead_letter_id: str, event: Event, *, key: str) -> None:
        """Append ``event`` to the dead letter's stream; ``key`` makes a retry a no-op."""
        ...


class StoreHistory:
    def __init__(self, store: EventStore, *, worker: str = "rally-dlq") -> None:
        self.store = store
        self.worker = worker

    async def record(self, dead_letter_id: str, event: Event, *, key: str) -> None:
        by = getattr(event, "by", None)
        await self.store.append(
            stream_of(dead_letter_id),
            None,  # any version: operator actions on one letter never conflict
            [
                NewEvent(
                    type=event.type_name(),
                    data=event.model_dump(mode="json"),
                    schema_version=event.version,
                )
            ],
            metadata=Metadata(message_id=str(uuid4()), sender=by, worker=self.worker),
            idempotency_key=key,
        )
