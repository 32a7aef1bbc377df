"""Snapshots of a worker's folded view: an exact JSON codec, a format check, save and load.

A worker that starts from a snapshot must end up with the very state a full
replay would build, so the codec round-trips every value the folds hold
(dataclasses, tuples, frozensets, UUIDs, aware datetimes, dicts with any keys,
contract events — decoded through their contracts, so an old event version is
upcast like any stored event). Each dict is tagged, so a task's JSON result
can never be mistaken for a tag.

The format is a version number plus a fingerprint of the field names of every
class the snapshot holds: adding a field to a fold (``Agent``, ``Task``...)
changes the fingerprint, and a snapshot of the earlier shape is then ignored
(full replay, logged) rather than trusted half-way.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog
from pydantic import BaseModel

from contracts import Event, decode_payload
from contracts.errors import ContractError
from workers.store.base import EventStore

log = structlog.get_logger(__name__)

FORMAT_VERSION = 1


class SnapshotError(Exception):
    """A snapshot this code cannot read exactly."""


class Codec:
    """Encodes and decodes values built of the given dataclasses and JSON-native values."""

    def __init__(self, classes: Sequence[type[Any]]) -> None:
        self.classes = {cls.__name__: cls for cls in classes}
        shape = ";".join(
            f"{name}:{','.join(f.name for f in dataclasses.fields(cls))}"
            for name, cls in sorted(self.classes.items())
        )
        digest = hashlib.sha256(shape.encode()).hexdigest()[:16]
        self.format = f"{FORMAT_VERSION}:{digest}"

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise SnapshotError("naive datetime in a snapshot")
            return {"$dt": value.isoformat()}
        if isinstance(value, UUID):
            return {"$uuid": str(value)}
        if isinstance(value, BaseModel):
            if not isinstance(value, Event):
                raise SnapshotError(f"{type(value).__name__} is not an event")
            return {"$event": [value.type_name(), value.version, value.model_dump(mode="json")]}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            name = type(value).__name__
            if self.classes.get(name) is not type(value):
                raise SnapshotError(f"{name} is not a snapshot class")
            fields = {
                f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value)
            }
            return {"$obj": [name, fields]}
        if isinstance(value, OrderedDict):
            return {"$odict": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, dict):
            return {"$dict": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v) for v in value]}
        if isinstance(value, frozenset):
            return {"$frozenset": [self.encode(v) for v in value]}
        if isinstance(value, set):
            return {"$set": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        raise SnapshotError(f"cannot snapshot a {type(value).__name__}")

    def decode(self, raw: Any) -> Any:
        if raw is None or isinstance(raw, bool | int | float | str):
            return raw
        if isinstance(raw, list):
            return [self.decode(v) for v in raw]
        if not isinstance(raw, dict) or len(raw) != 1:
            raise SnapshotError("untagged object in a snapshot")
        ((tag, body),) = raw.items()
        match tag:
            case "$dt":
                return datetime.fromisoformat(body)
            case "$uuid":
                return UUID(body)
            case "$event":
                type_name, version, data = body
                return decode_payload(type_name, version, data)
            case "$obj":
                name, fields = body
                cls = self.classes.get(name)
                if cls is None:
                    raise SnapshotError(f"unknown class {name!r} in a snapshot")
                return cls(**{k: self.decode(v) for k, v in fields.items()})
            case "$odict":
                return OrderedDict((self.decode(k), self.decode(v)) for k, v in body)
            case "$dict":
                return {self.decode(k): self.decode(v) for k, v in body}
            case "$tuple":
                return tuple(self.decode(v) for v in body)
            case "$frozenset":
                return frozenset(self.decode(v) for v in body)
            case "$set":
                return {self.decode(v) for v in body}
        raise SnapshotError(f"unknown tag {tag!r} in a snapshot")


async def save(
    store: EventStore, name: str, position: int, codec: Codec, state: Mapping[str, Any]
) -> None:
    """Save ``state`` (a mapping of encodable values) as of ``position``."""
    body = {"format": codec.format, "state": {k: codec.encode(v) for k, v in state.items()}}
    await store.save_snapshot(name, position, body)


async def load(store: EventStore, name: str, codec: Codec) -> tuple[int, dict[str, Any]] | None:
    """The snapshot as of its position, or None (none, old format, unreadable: logged)."""
    found = await store.load_snapshot(name)
    if found is None:
        log.info("snapshot.none", snapshot=name)
        return None
    position, body = found
    if body.get("format") != codec.format:
        log.warning(
            "snapshot.ignored",
            snapshot=name,
            why="format",
            found=body.get("format"),
            expected=codec.format,
        )
        return None
    try:
        raw = body["state"]
        state = {str(k): codec.decode(v) for k, v in raw.items()}
    except (SnapshotError, ContractError, KeyError, TypeError, ValueError) as exc:
        log.warning("snapshot.ignored", snapshot=name, why="unreadable", error=repr(exc))
        return None
    return position, state
