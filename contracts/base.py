"""The base of every message model: frozen, versioned, strict or tolerant by kind.

A message class declares what it is with class variables, not fields, so the
payload on the wire holds only data:

- ``kind``: command (asks a worker to act), event (a fact in the history) or
  notice (tells one agent or client something).
- ``route``: for commands, the worker that owns them (``registry``, ``tasks``,
  ``allocator``); it is also the first word of the routing key.
- ``version``: the schema version this code reads; older versions are upcast on read.
- ``writes``: the version this release writes, if older than ``version`` (the fleet may
  still run replicas that read only that one; contracts/versions.py turns it back).
- ``abstract``: set on shared bases, which are not messages themselves.

Unknown fields (docs/upgrades.md): events and notices *ignore* them, so a newer release
may add an optional field without a new version and an older reader still takes the
message. Commands *refuse* them: a command field the worker does not know is a request
it would silently not honour (a typo'd ``max_attempt``, or a feature of a newer release
that an older replica would skip), so it is ``invalid``; a new command field comes with
a new version, which an older replica parks for a newer one instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

Kind = Literal["command", "event", "notice"]

# Filled as message classes are defined; contracts.registry reads it after importing them
# all, so this module imports no message module (and none imports it back in a circle).
_TYPES: dict[str, type[Message]] = {}
TYPES: Mapping[str, type[Message]] = MappingProxyType(_TYPES)


def _register(cls: type[Message]) -> None:
    name = cls.type_name()
    existing = _TYPES.get(name)
    if existing is not None and existing is not cls:
        raise TypeError(f"two message classes are named {name!r}: {existing} and {cls}")
    _TYPES[name] = cls


class Message(BaseModel):
    """A typed payload. Subclasses are registered by type name when defined."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: ClassVar[Kind]
    route: ClassVar[str | None] = None
    version: ClassVar[int] = 1
    writes: ClassVar[int | None] = None  # None: write ``version``
    abstract: ClassVar[bool] = True

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        _register(cls)


class Command(Message):
    model_config = ConfigDict(extra="forbid")

    kind: ClassVar[Kind] = "command"
    abstract: ClassVar[bool] = True


class Event(Message):
    kind: ClassVar[Kind] = "event"
    abstract: ClassVar[bool] = True


class Notice(Message):
    kind: ClassVar[Kind] = "notice"
    abstract: ClassVar[bool] = True
