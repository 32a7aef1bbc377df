"""What both adapters share: the append API on top of ``append_batch``, and the relay hook."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from workers.store.base import (
    NO_METADATA,
    AppendOutcome,
    AppendRequest,
    AppendResult,
    CommitListener,
    EventStore,
    Handoff,
    Metadata,
    NewEvent,
    OutboxMessage,
    Publishes,
    RecordedEvent,
    StreamAppend,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RelayHook:
    """The local relay: rows are born claimed by ``owner`` and handed to ``on_commit``."""

    owner: str
    claim_seconds: float
    on_commit: CommitListener


class SingleStreamAppend(ABC):
    """``append`` is ``append_many`` with one stream; every store front shares it."""

    async def append(
        self,
        stream: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        metadata: Metadata = NO_METADATA,
        idempotency_key: str | None = None,
        outbox: Sequence[OutboxMessage] = (),
        cancel_timers_of: Sequence[str] = (),
    ) -> AppendResult:
        return await self.append_many(
            [StreamAppend(stream, expected_version, events)],
            metadata=metadata,
            idempotency_key=idempotency_key,
            outbox=outbox,
            cancel_timers_of=cancel_timers_of,
        )

    @abstractmethod
    async def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        metadata: Metadata = NO_METADATA,
        idempotency_key: str | None = None,
        outbox: Sequence[OutboxMessage] = (),
        cancel_timers_of: Sequence[str] = (),
    ) -> AppendResult: ...


class StoreFront(SingleStreamAppend):
    """A store in front of another (group committer, timing): reads pass straight through;
    each front decides what it does with appends."""

    store: EventStore

    async def read(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        return await self.store.read(stream, from_version)

    async def stream_version(self, stream: str) -> int:
        return await self.store.stream_version(stream)

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, stream_prefix: str | None = None
    ) -> list[RecordedEvent]:
        return await self.store.read_all(from_position, limit, stream_prefix=stream_prefix)

    async def last_position(self) -> int:
        return await self.store.last_position()

    async def save_snapshot(self, stream: str, version: int, state: Mapping[str, Any]) -> None:
        await self.store.save_snapshot(stream, version, state)

    async def load_snapshot(self, stream: str) -> tuple[int, dict[str, Any]] | None:
        return await self.store.load_snapshot(stream)


class StoreBase(SingleStreamAppend):
    """Single appends are batches of one; adapters implement ``append_batch``."""

    def __init__(self, publishes: Publishes | None = None) -> None:
        self._relay: RelayHook | None = None
        # which events get an outbox row (None: all); see base.Publishes
        self.publishes = publishes

    @abstractmethod
    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]: ...

    async def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        metadata: Metadata = NO_METADATA,
        idempotency_key: str | None = None,
        outbox: Sequence[OutboxMessage] = (),
        cancel_timers_of: Sequence[str] = (),
    ) -> AppendResult:
        request = AppendRequest(appends, metadata, idempotency_key, outbox, cancel_timers_of)
        (outcome,) = await self.append_batch([request])
        if isinstance(outcome, AppendResult):
            return outcome
        raise outcome

    def attach_relay(self, owner: str, claim_seconds: float, on_commit: CommitListener) -> None:
        self._relay = RelayHook(owner, claim_seconds, on_commit)

    def detach_relay(self) -> None:
        self._relay = None

    def _notify_relay(self, hook: RelayHook | None, handoff: Handoff) -> None:
        """Called after commit. A failing listener must not turn a committed append into
        an error: the rows are safe in the outbox and the sweeper will publish them."""
        if hook is None or not (handoff.rows or handoff.cancelled):
            return
        try:
            hook.on_commit(handoff)
        except Exception:
            log.exception("outbox.notify_failed", rows=len(handoff.rows))
