"""The envelope every message travels in, and the codec between bytes and models.

Wire format (JSON, UTF-8)::

    {"id": "<uuid>", "type": "SubmitTask", "version": 1,
     "correlation_id": "<uuid>", "causation_id": "<uuid>|null",
     "sender": "client-7", "sent_at": "2026-11-24T10:00:00Z", "payload": {...}}
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any, Generic, TypeVar
from uuid import UUID

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.base import Message
from contracts.errors import (
    InvalidMessage,
    MalformedMessage,
    MessageTooLarge,
    UnknownMessageType,
)
from contracts.ids import new_id
from contracts.registry import lookup
from contracts.versions import Origin, dump_envelope, lift

DEFAULT_MAX_BYTES = 1024 * 1024

M = TypeVar("M", bound=Message)
M2 = TypeVar("M2", bound=Message)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel, Generic[M]):
    """Identity, lineage and a typed payload. Build one with :meth:`wrap`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # id and sent_at are required on the wire: a sender that forgot the id would lose
    # exactly-once on its retries without noticing if the receiver made one up
    id: UUID = Field(description="unique per message; the idempotency key")
    type: str = Field(description="the payload's message type, e.g. SubmitTask")
    version: int = Field(ge=1, description="schema version of the payload")
    correlation_id: UUID = Field(description="shared by every message of one piece of work")
    causation_id: UUID | None = Field(default=None, description="id of the message that caused it")
    sender: str = Field(min_length=1, max_length=200, description="who sent it (as claimed)")
    sent_at: datetime = Field(description="when the sender built it (RFC 3339, UTC)")
    payload: M

    @classmethod
    def wrap(
        cls,
        payload: M2,
        *,
        sender: str,
        caused_by: Envelope[Any] | None = None,
        correlation_id: UUID | None = None,
        message_id: UUID | None = None,
    ) -> Envelope[M2]:
        """Put a payload in an envelope; ``caused_by`` carries the lineage along."""
        msg_id = message_id or new_id()
        if caused_by is not None:
            correlation = correlation_id or caused_by.correlation_id
            causation: UUID | None = caused_by.id
        else:
            correlation = correlation_id or msg_id
            causation = None
        return envelope_class(type(payload))(
            id=msg_id,
            type=payload.type_name(),
            version=payload.version,
            correlation_id=correlation,
            causation_id=causation,
            sender=sender,
            sent_at=utcnow(),
            payload=payload,
        )


@cache
def envelope_class(message_cls: type[M]) -> type[Envelope[M]]:
    return Envelope[message_cls]  # type: ignore[valid-type]


def encode(envelope: Envelope[Any], *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    body = dump_envelope(envelope, envelope.payload)  # in the version the fleet reads
    if len(body) > max_bytes:
        raise MessageTooLarge(
            f"{envelope.type} message is {len(body)} bytes, over the limit of {max_bytes}"
        )
    return body


def decode(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope[Message]:
    """Bytes in, a validated envelope out, or a :class:`ContractError` that says what is wrong."""
    if len(raw) > max_bytes:
        raise MessageTooLarge(f"message is {len(raw)} bytes, over the limit of {max_bytes}")
    try:
        # NaN and Infinity are not JSON (RFC 8259): nothing downstream could store or send them
        obj = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise MalformedMessage(f"body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedMessage(f"body is JSON but not an object (got {type(obj).__name__})")
    type_name = obj.get("type")
    if not isinstance(type_name, str):
        raise InvalidMessage(
            "envelope has no string 'type'", [{"loc": "type", "msg": "a string is required"}]
        )
    cls = lookup(type_name)
    if cls is None:
        raise UnknownMessageType(f"no contract for message type {type_name!r}")
    origin = Origin(at=_sent_at(obj.get("sent_at")))
    obj["payload"] = lift(cls, obj.get("version"), obj.get("payload"), origin)
    obj["version"] = cls.version
    try:
        return envelope_class(cls).model_validate(obj)
    except ValidationError as exc:
        raise invalid_from(exc, type_name) from None


def decode_payload(
    type_name: str, version: int, data: Any, *, recorded_at: datetime | None = None
) -> Message:
    """Validate a stored payload (an event's data) into its model, upcasting old versions.

    ``recorded_at``: when the store recorded it, for upcasters that fill a field from it."""
    cls = lookup(type_name)
    if cls is None:
        raise UnknownMessageType(f"no contract for message type {type_name!r}")
    payload = lift(cls, version, data, Origin(at=recorded_at))
    try:
        return cls.model_validate(payload)
    except ValidationError as exc:
        raise invalid_from(exc, type_name) from None


def decode_current_json(type_name: str, version: int, text: str | bytes) -> Message | None:
    """A stored payload's JSON text, validated in one step if it is of the current version
    (equal to ``decode_payload`` of the parsed text; an older one needs upcasting on the
    parsed object, a newer one refusing: None, decode it with ``decode_payload``)."""
    cls = lookup(type_name)
    if cls is None or version != cls.version or isinstance(version, bool):
        return None
    try:
        return cls.model_validate_json(text)
    except ValidationError as exc:
        raise invalid_from(exc, type_name) from None


def _sent_at(value: Any) -> datetime | None:
    """The envelope's send time for upcasters; a bad one fails validation later anyway."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def invalid_from(exc: ValidationError, type_name: str) -> InvalidMessage:
    errors = [
        {"loc": ".".join(str(part) for part in err["loc"]), "msg": err["msg"]}
        for err in exc.errors(include_url=False)
    ]
    summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return InvalidMessage(f"{type_name} does not match its contract: {summary}{more}", errors)
