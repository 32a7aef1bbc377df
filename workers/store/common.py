"""What both adapters share: the append API on top of ``append_batch``, and the relay hook."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from workers.store.base import (
    NO_METADATA,
    AppendOutcome,
    AppendRequest,
    AppendResult,
    CommitListener,
    Metadata,
    NewEvent,
    OutboxMessage,
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
    ) -> AppendResult:
        return await self.append_many(
            [StreamAppend(stream, expected_version, events)],
            metadata=metadata,
            idempotency_key=idempotency_key,
            outbox=outbox,
        )

    @abstractmethod
    async def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        metadata: Metadata = NO_METADATA,
        idempotency_key: str | None = None,
        outbox: Sequence[OutboxMessage] = (),
    ) -> AppendResult: ...


class StoreBase(SingleStreamAppend):
    """Single appends are batches of one; adapters implement ``append_batch``."""

    def __init__(self) -> None:
        self._relay: RelayHook | None = None

    @abstractmethod
    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]: ...

    async def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        metadata: Metadata = NO_METADATA,
        idempotency_key: str | None = None,
        outbox: Sequence[OutboxMessage] = (),
    ) -> AppendResult:
        request = AppendRequest(appends, metadata, idempotency_key, outbox)
        (outcome,) = await self.append_batch([request])
        if isinstance(outcome, AppendResult):
            return outcome
        raise outcome

    def attach_relay(self, owner: str, claim_seconds: float, on_commit: CommitListener) -> None:
        self._relay = RelayHook(owner, claim_seconds, on_commit)

    def detach_relay(self) -> None:
        self._relay = None

    def _notify_relay(self, hook: RelayHook | None, ids: Sequence[int]) -> None:
        """Called after commit. A failing listener must not turn a committed append into
        an error: the rows are safe in the outbox and the sweeper will publish them."""
        if hook is None or not ids:
            return
        try:
            hook.on_commit(ids)
        except Exception:
            log.exception("outbox.notify_failed", rows=len(ids))
