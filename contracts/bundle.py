"""Bundles: many messages for one destination in one broker message.

Every broker message costs the broker a queue write, a delivery and an ack,
and costs both ends a publish and a consume, whatever its size. When a sender
has several messages for the same exchange and routing key at the same moment
(a worker committing a batch, an agent reporting many tasks), it sends them as
one *bundle*; a consumer splits it and handles each member as if it had come
alone. Routing is unchanged: members of a bundle share its exchange and
routing key, so a queue bound to a key gets exactly the messages it would get
one by one.

A bundle is marked by its ``content_type`` (:data:`BUNDLE_CONTENT_TYPE`). Its
body is, for each member, one line of JSON with the member's own message
properties, then the member's body (exactly the bytes it would travel with
alone), then a newline::

    {"id": "<message id>", "type": "TaskSucceeded", "cid": "<correlation id>",
     "h": {"traceparent": "..."}, "n": 312}
    {"id": "...", "type": "TaskSucceeded", ... the envelope, 312 bytes ...}
    {"id": ..., "n": 298}
    ...

``n`` is the body's length in bytes, so a body may hold any bytes. Only the
properties that differ per message travel per member; the rest (user id,
sender app, persistence) are the bundle's. A consumer that cannot split a
bundle dead-letters it whole with the reason; a member that fails is
dead-lettered or retried alone, as a message of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.errors import MalformedMessage, MessageTooLarge
from contracts.headers import BUNDLE_COUNT as BUNDLE_COUNT

BUNDLE_CONTENT_TYPE = "application/vnd.rally.bundle"
# one encoder for every line: json.dumps with options builds a new one per call
_META = json.JSONEncoder(separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class BundleMember:
    """One message of a bundle, with the properties it would carry on its own."""

    body: bytes
    message_id: str | None = None
    type: str | None = None
    correlation_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)


def encode_bundle(members: Sequence[BundleMember]) -> bytes:
    parts: list[bytes] = []
    for member in members:
        meta: dict[str, Any] = {"id": member.message_id, "n": len(member.body)}
        if member.type is not None:
            meta["type"] = member.type
        if member.correlation_id is not None:
            meta["cid"] = member.correlation_id
        if member.headers:
            meta["h"] = dict(member.headers)
        parts.append(_META.encode(meta).encode())
        parts.append(member.body)
    return b"\n".join(parts) + b"\n"


def decode_bundle(
    raw: bytes, *, max_members: int = 10_000, max_bytes: int = 64 * 1024 * 1024
) -> list[BundleMember]:
    """The members of a bundle, or :class:`MalformedMessage` saying where it breaks.

    Each member is checked against the size limit of a single message when it is
    decoded; ``max_bytes`` bounds the bundle as a whole.
    """
    if len(raw) > max_bytes:
        raise MessageTooLarge(f"bundle is {len(raw)} bytes, over the limit of {max_bytes}")
    members: list[BundleMember] = []
    pos, size = 0, len(raw)
    while pos < size:
        if len(members) >= max_members:
            raise MessageTooLarge(f"bundle has more than {max_members} members")
        end_meta = raw.find(b"\n", pos)
        if end_meta < 0:
            raise MalformedMessage(f"bundle member {len(members)}: no line of properties")
        meta = _meta(raw[pos:end_meta], len(members))
        start = end_meta + 1
        stop = start + meta["n"]
        if stop >= size + 1 or raw[stop : stop + 1] != b"\n":
            raise MalformedMessage(
                f"bundle member {len(members)}: body of {meta['n']} bytes does not end the line"
            )
        members.append(
            BundleMember(
                body=raw[start:stop],
                message_id=_opt_str(meta.get("id")),
                type=_opt_str(meta.get("type")),
                correlation_id=_opt_str(meta.get("cid")),
                headers=meta.get("h") or {},
            )
        )
        pos = stop + 1
    if not members:
        raise MalformedMessage("bundle has no members")
    return members


def _meta(line: bytes, index: int) -> dict[str, Any]:
    try:
        meta = json.loads(line, parse_constant=_no_constant)
    except ValueError as exc:
        raise MalformedMessage(f"bundle member {index}: properties are not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise MalformedMessage(f"bundle member {index}: properties are not a JSON object")
    n = meta.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise MalformedMessage(f"bundle member {index}: no body length 'n'")
    if not isinstance(meta.get("h", {}), dict):
        raise MalformedMessage(f"bundle member {index}: headers 'h' are not an object")
    return meta


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
