"""Every message type by name, and the upcasters that lift old versions.

This is the discriminated union of the protocol: the envelope's ``type`` picks
the payload model, its ``version`` picks the upcasters to run first.
"""

from __future__ import annotations

# importing the message modules defines (and so registers) every protocol type, and
# contracts.upcasters registers what lifts their older versions
import contracts.agents
import contracts.deadletters
import contracts.resources
import contracts.tasks
import contracts.upcasters  # noqa: F401
from contracts.base import TYPES, Message
from contracts.versions import downcaster, upcast, upcaster

__all__ = ["all_types", "downcaster", "lookup", "upcast", "upcaster"]


def lookup(type_name: str) -> type[Message] | None:
    return TYPES.get(type_name)


def all_types() -> dict[str, type[Message]]:
    return dict(sorted(TYPES.items()))
