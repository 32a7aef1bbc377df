"""How a contract changes while two releases run side by side (docs/upgrades.md).

- An additive change (a new optional field) keeps the version: events and notices ignore
  fields they do not know, so an older reader takes a newer writer's payload as it is.
- A breaking change bumps the model's ``version`` and ships an *upcaster* (``@upcaster``)
  that lifts the previous version's payload. It runs on every decode, of a message off the
  wire and of an event out of the store, so the code only ever sees the newest model.
- The release that introduces version N+1 still *writes* version N (``Message.writes``),
  turned back by a *downcaster*, because replicas of the previous release are still
  reading; the fleet switches to writing N+1 (``RALLY_WRITE_VERSIONS``, or the next
  release's default) once no replica older than N+1 is left.

An upcaster sees the payload and its :class:`Origin` (when the message was sent, or the
event recorded), so it can fill a field that an older writer left to the record.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from contracts.base import TYPES, Message
from contracts.errors import InvalidMessage, UnsupportedVersion

WRITE_VERSIONS_ENV = "RALLY_WRITE_VERSIONS"  # "latest", or "TaskSubmitted=2,OtherType=3"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a payload being upcast comes from: ``at`` is when it was sent or recorded."""

    at: datetime | None = None


Upcaster = Callable[[dict[str, Any], Origin], dict[str, Any]]
Downcaster = Callable[[dict[str, Any]], dict[str, Any]]

_UP: dict[tuple[str, int], Upcaster] = {}
_DOWN: dict[tuple[str, int], Downcaster] = {}
_written: dict[str, int] | None = None  # the override, once read; "latest" = every version


class NewerVersion(UnsupportedVersion):
    """A payload newer than this code reads: a newer release wrote it (same reason)."""

    def __init__(self, type_name: str, version: int, known: int) -> None:
        super().__init__(
            f"{type_name} version {version} is newer than this code reads (up to {known})"
        )
        self.version = version
        self.known = known

    @property
    def next_release(self) -> bool:
        """One version ahead: a replica of the next release may be running and read it."""
        return self.version == self.known + 1


def upcaster(
    type_name: str, from_version: int
) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register ``fn(payload[, origin])`` that turns ``from_version`` into the next one."""

    def decorate(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        if len(inspect.signature(fn).parameters) >= 2:
            _UP[(type_name, from_version)] = fn
        else:
            _UP[(type_name, from_version)] = lambda payload, _origin: fn(payload)
        return fn

    return decorate


def downcaster(type_name: str, from_version: int) -> Callable[[Downcaster], Downcaster]:
    """Register ``fn(payload)`` that turns ``from_version`` into the one before it."""

    def decorate(fn: Downcaster) -> Downcaster:
        _DOWN[(type_name, from_version)] = fn
        return fn

    return decorate


def upcast(
    type_name: str, version: int, target: int, payload: dict[str, Any], origin: Origin = Origin()
) -> dict[str, Any]:
    """Apply upcasters from ``version`` up to ``target``; KeyError if a step is missing."""
    while version < target:
        payload = _UP[(type_name, version)](payload, origin)
        version += 1
    return payload


def lift(cls: type[Message], version: Any, payload: Any, origin: Origin = Origin()) -> Any:
    """A payload of any version this code knows, as the current version's (not validated)."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidMessage(
            "envelope has no positive integer 'version'",
            [{"loc": "version", "msg": "a positive integer is required"}],
        )
    if version > cls.version:
        raise NewerVersion(cls.type_name(), version, cls.version)
    if version < cls.version:
        if not isinstance(payload, dict):
            raise InvalidMessage("payload must be an object", [{"loc": "payload", "msg": "object"}])
        try:
            payload = upcast(cls.type_name(), version, cls.version, payload, origin)
        except KeyError:
            raise UnsupportedVersion(
                f"{cls.type_name()} version {version} has no upcaster to {cls.version}"
            ) from None
    return payload


# ---- writing: the version the whole fleet can read ----


def set_write_versions(spec: str | Mapping[str, int] | None) -> None:
    """Override what is written: "latest", {"TaskSubmitted": 2}, or None (the env again)."""
    global _written
    if spec is None:
        _written = None
    elif isinstance(spec, str):
        _written = _parse(spec)
    else:
        _written = dict(spec)


def _parse(spec: str) -> dict[str, int]:
    if spec.strip() == "latest":
        return {name: cls.version for name, cls in TYPES.items()}
    found: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, number = item.partition("=")
        if name not in TYPES or not number.isdigit():
            raise ValueError(f"{WRITE_VERSIONS_ENV}: {item!r} is not <known type>=<version>")
        found[name] = int(number)
    return found


def written_version(cls: type[Message]) -> int:
    """The version this release writes of ``cls``: its ``writes`` unless overridden."""
    global _written
    if _written is None:
        _written = _parse(os.environ.get(WRITE_VERSIONS_ENV, ""))
    chosen = _written.get(cls.type_name(), cls.writes or cls.version)
    return max(1, min(chosen, cls.version))


def for_writing(message: Message) -> tuple[int, dict[str, Any]]:
    """The message as the version the fleet reads: (version, JSON-ready payload)."""
    data: dict[str, Any] = message.model_dump(mode="json")
    version, target = message.version, written_version(type(message))
    while version > target:
        step = _DOWN.get((message.type_name(), version))
        if step is None:
            raise TypeError(f"{message.type_name()} v{version} has no downcaster to v{target}")
        data = step(data)
        version -= 1
    return version, data


def dump_envelope(envelope: BaseModel, payload: Message) -> bytes:
    """An envelope's JSON, its payload in the version the fleet reads."""
    if written_version(type(payload)) == payload.version:
        return envelope.model_dump_json().encode()
    version, data = for_writing(payload)
    body = envelope.model_dump(mode="json")
    body["version"], body["payload"] = version, data
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
