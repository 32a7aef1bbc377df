"""The event store boundary: the records it keeps and the Protocols callers code against.

Workers depend on ``EventStore`` only. The relay depends on ``OutboxStore``
(what it needs to move committed outbox rows to the broker), and the group
committer on ``BatchEventStore`` (one transaction for many independent
appends). Both adapters (SQLite, PostgreSQL) implement all three.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from contracts.ids import new_id
from workers.store.errors import ConcurrencyError, StoreError

_new = object.__new__
_set = object.__setattr__
_LAZY = {"data": "_data_json", "metadata": "_metadata_json"}  # RecordedEvent.stored's


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. Its id is fixed before the append so retries keep it."""

    type: str
    data: Mapping[str, Any]
    id: UUID = field(default_factory=new_id)
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the store recorded it. ``recorded_at`` is tz-aware UTC."""

    position: int
    stream: str
    version: int
    id: UUID
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    # a read's data and metadata as stored, parsed when first asked for (``stored``)
    _data_json: str | None = field(default=None, init=False, repr=False, compare=False)
    _metadata_json: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def stored(
        cls,
        position: int,
        stream: str,
        version: int,
        id: UUID,
        type: str,
        schema_version: int,
        data_json: str,
        metadata_json: str,
        recorded_at: datetime,
    ) -> RecordedEvent:
        """A row as read, its data and metadata left as JSON until read: folds never read
        the metadata and decode the data from its text (``data_text``, ``load_event``);
        parsing both per read was a third of a read-model catch-up."""
        record: RecordedEvent = _new(cls)
        _set(record, "position", position)
        _set(record, "stream", stream)
        _set(record, "version", version)
        _set(record, "id", id)
        _set(record, "type", type)
        _set(record, "schema_version", schema_version)
        _set(record, "recorded_at", recorded_at)
        _set(record, "_data_json", data_json)
        _set(record, "_metadata_json", metadata_json)
        return record

    def data_text(self) -> str | None:
        """The data's JSON as stored, while it is not parsed yet (else None: use ``data``)."""
        return self._data_json

    if not TYPE_CHECKING:  # hidden from mypy, which would accept any attribute name

        def __getattr__(self, name: str) -> Any:
            # only reached for a slot never set: the data or metadata of a ``stored`` record
            slot = _LAZY.get(name)
            text = None if slot is None else object.__getattribute__(self, slot)
            if text is None:
                raise AttributeError(name)
            value = json.loads(text)
            if not isinstance(value, dict):
                raise StoreError(f"expected a JSON object in the store, found {value!r:.40}")
            _set(self, name, value)
            _set(self, slot, None)
            return value

    @property
    def category(self) -> str:
        """The stream's category: ``task`` for ``task-3f2a``."""
        return stream_category(self.stream)


def stream_category(stream: str) -> str:
    return stream.split("-", 1)[0]


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events for one stream. ``expected_version``: 0 = must not exist, None = any."""

    stream: str
    expected_version: int | None
    events: Sequence[NewEvent]


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A side-effect message committed with the events (assignment, notice, timer)."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, str] = field(default_factory=dict)
    not_before: datetime | None = None
    # The stream this timer watches: an append with ``cancel_timers_of=[that stream]``
    # deletes it, unpublished, in its own transaction (a task that ended needs no watchdog).
    timer_of: str | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append recorded. ``events``: the events as a later read would return them,
    in position order, so a caller can apply its own append without reading it back;
    empty for a ``duplicate`` (an idempotent repeat records nothing)."""

    positions: tuple[int, ...]
    versions: dict[str, int]
    duplicate: bool
    events: tuple[RecordedEvent, ...] = ()
    # builds ``events`` when first asked for (``recorded``)
    _build: Callable[[], tuple[RecordedEvent, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def recorded(
        cls,
        positions: tuple[int, ...],
        versions: dict[str, int],
        build: Callable[[], tuple[RecordedEvent, ...]],
    ) -> AppendResult:
        """A new result whose ``events`` are built on first use: the allocator applies
        them, the task manager never looks (parsing them cost it on every append)."""
        result: AppendResult = _new(cls)
        _set(result, "positions", positions)
        _set(result, "versions", versions)
        _set(result, "duplicate", False)
        _set(result, "_build", build)
        return result

    if not TYPE_CHECKING:  # hidden from mypy, which would accept any attribute name

        def __getattr__(self, name: str) -> Any:
            # only reached for a slot never set: the events of a ``recorded`` result
            build = object.__getattribute__(self, "_build") if name == "events" else None
            if build is None:
                raise AttributeError(name)
            events = build()
            _set(self, "events", events)
            _set(self, "_build", None)
            return events


@dataclass(frozen=True, slots=True)
class Metadata:
    """Written into each appended event's metadata column."""

    message_id: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    sender: str | None = None
    worker: str | None = None
    replica: str | None = None
    traceparent: str | None = None  # W3C trace context of the handling that appended


NO_METADATA = Metadata()


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """One caller's append, as a unit the group committer can batch with others."""

    appends: Sequence[StreamAppend]
    metadata: Metadata = NO_METADATA
    idempotency_key: str | None = None
    outbox: Sequence[OutboxMessage] = ()
    cancel_timers_of: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Expiry:
    """Streams that leave the hot store together (a task and its idempotency key stream),
    each at the version the caller exported, with the processed-message keys of their
    events. The adapter deletes all of them or none (see ``ExpireResult.kept``)."""

    streams: Mapping[str, int]
    processed_keys: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class ExpireResult:
    """What ``expire`` did: the indexes of the groups deleted, and why the others stayed."""

    deleted: tuple[int, ...]
    kept: Mapping[int, str]
    events: int = 0
    outbox: int = 0
    processed: int = 0


# What one request in a batch came to: its result, or the conflict that skipped it.
AppendOutcome = AppendResult | ConcurrencyError


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A message ready for the broker: what the relay hands its publisher."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A committed, not yet published outbox entry.

    Exactly one of ``event`` (an appended event, encoded by the relay) and
    ``message`` (a side-effect message, published as is) is set. ``stream`` is
    the ordering key: event rows of one stream are published in id order.
    """

    id: int
    stream: str | None
    event: RecordedEvent | None = None
    message: OutgoingRecord | None = None


# Does anyone subscribe to an event of this stream category and type (``"task"``,
# ``"TaskReady"``)? An event nobody subscribes to gets no outbox row: nothing written,
# nothing published. The runner passes the broker topology's answer.
Publishes = Callable[[str, str], bool]


class EventStore(Protocol):
    """Append-only history with optimistic concurrency. See the module docs of the adapters.

    ``append`` / ``append_many`` with ``cancel_timers_of``: in the same transaction, before
    this append's own outbox rows are written, delete every unpublished outbox row tagged
    ``OutboxMessage.timer_of`` with one of those streams (earlier requests' timers included,
    this one's not), so the timers of an ended task never reach the broker.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

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
    ) -> AppendResult: ...

    async def append_many(
        self,
        appends: Sequence[StreamAppend],
        *,
        metadata: Metadata = NO_METADATA,
        idempotency_key: str | None = None,
        outbox: Sequence[OutboxMessage] = (),
        cancel_timers_of: Sequence[str] = (),
    ) -> AppendResult: ...

    async def read(self, stream: str, from_version: int = 1) -> list[RecordedEvent]: ...

    async def stream_version(self, stream: str) -> int: ...

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, stream_prefix: str | None = None
    ) -> list[RecordedEvent]: ...

    async def last_position(self) -> int: ...

    async def save_snapshot(self, stream: str, version: int, state: Mapping[str, Any]) -> None: ...

    async def load_snapshot(self, stream: str) -> tuple[int, dict[str, Any]] | None: ...


class BatchEventStore(EventStore, Protocol):
    async def append_batch(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        """Apply independent requests in one transaction, in order.

        A request whose expected version does not match is skipped and gets
        its ``ConcurrencyError``; the others commit. Any other error fails the
        whole batch (nothing is written).
        """
        ...


@dataclass(frozen=True, slots=True)
class Handoff:
    """What a commit hands the local relay's fast path: the rows it wrote born claimed
    by the relay (built from the values written, so the relay reads nothing back).

    ``claimed_at`` is ``time.monotonic()`` taken no later than the claim's start: the
    claim lasts at least until ``claimed_at + claim_seconds``.

    ``after``: per stream, the newest row that was pending at this commit, where every
    pending row of the stream was this relay's own (handed earlier, not yet confirmed).
    The stream's first row here must not go out before that one: the relay checks it
    published it, or else asks the store (``outbox_take_own``).
    """

    rows: Sequence[OutboxRow]
    claimed_at: float
    after: Mapping[str, int] = field(default_factory=dict)
    # Outbox ids this commit deleted as cancelled timers: the relay must not publish them,
    # whether handed earlier or claimed by its sweeper.
    cancelled: Sequence[int] = ()


CommitListener = Callable[[Handoff], None]


class OutboxStore(Protocol):
    """What the relay needs from the store. Times are the store's clock."""

    def attach_relay(self, owner: str, claim_seconds: float, on_commit: CommitListener) -> None:
        """From now on outbox rows are born claimed by ``owner`` for ``claim_seconds``,
        and ``on_commit`` gets them right after each commit (the fast path).

        An event row is born claimed only if every pending row of its stream (all have
        lower ids) is ``owner``'s too (checked in the append transaction; see
        ``Handoff.after``); otherwise it is written unclaimed, for the sweeper, and not
        handed over. Timers are never born claimed."""
        ...

    def detach_relay(self) -> None: ...

    async def outbox_take_own(
        self, owner: str, ids: Sequence[int], claim_seconds: float
    ) -> list[OutboxRow]:
        """Of ``ids``, the rows still claimed by ``owner`` that are first in line for their
        stream, claim renewed, in id order. Rows behind another pending row of their
        stream are released to the sweeper, which publishes in order.

        The fast path's fallback for handed rows it reached late (past half their
        claim): only a row whose claim is still ours may go out from here."""
        ...

    async def outbox_claim_due(
        self, owner: str, limit: int, claim_seconds: float
    ) -> list[OutboxRow]:
        """Unclaimed or expired rows and due timers, first in line for their stream,
        claimed by ``owner``, in id order (the sweeper)."""
        ...

    async def outbox_done(self, ids: Sequence[int]) -> None:
        """The rows are confirmed by the broker: forget them."""
        ...

    async def outbox_release(self, ids: Sequence[int], delay_seconds: float) -> None:
        """Publishing failed: let the sweeper retry the rows after ``delay_seconds``."""
        ...

    async def outbox_pending(self) -> int: ...

    async def acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the named lease; True while ``owner`` holds it."""
        ...

    async def release_lease(self, name: str, owner: str) -> None: ...


class Store(BatchEventStore, OutboxStore, Protocol):
    """Everything an adapter offers: what the group committer wraps."""
