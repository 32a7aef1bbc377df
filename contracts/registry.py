"""Every message type by name, and the upcasters that lift old versions.

This is the discriminated union of the protocol: the envelope's ``type`` picks
the payload model, its ``version`` picks the upcasters to run first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# importing the message modules defines (and so registers) every protocol type
import contracts.agents
import contracts.deadletters
import contracts.resources
import contracts.tasks  # noqa: F401
from contracts.base import TYPES, Message

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that turns payload version N into N+1.

    Usage::

        @upcaster("SubmitTask", from_version=1)
        def _v1_to_v2(payload): return {**payload, "priority": 0}
    """

    def decorate(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return decorate


def lookup(type_name: str) -> type[Message] | None:
    return TYPES.get(type_name)


def upcast(type_name: str, version: int, target: int, payload: dict[str, Any]) -> dict[str, Any]:
    """Apply upcasters from ``version`` up to ``target``; KeyError if a step is missing."""
    while version < target:
        payload = _UPCASTERS[(type_name, version)](payload)
        version += 1
    return payload


def all_types() -> dict[str, type[Message]]:
    return dict(sorted(TYPES.items()))
