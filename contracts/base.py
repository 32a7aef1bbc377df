"""The base of every message model: frozen, strict about unknown fields, versioned.

A message class declares what it is with class variables, not fields, so the
payload on the wire holds only data:

- ``kind``: command (asks a worker to act), event (a fact in the history) or
  notice (tells one agent or client something).
- ``route``: for commands, the worker that owns them (``registry``, ``tasks``,
  ``allocator``); it is also the first word of the routing key.
- ``version``: the schema version; older versions are upcast on read.
- ``abstract``: set on shared bases, which are not messages themselves.
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

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[Kind]
    route: ClassVar[str | None] = None
    version: ClassVar[int] = 1
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
    kind: ClassVar[Kind] = "command"
    abstract: ClassVar[bool] = True


class Event(Message):
    kind: ClassVar[Kind] = "event"
    abstract: ClassVar[bool] = True


class Notice(Message):
    kind: ClassVar[Kind] = "notice"
    abstract: ClassVar[bool] = True
