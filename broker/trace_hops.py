"""Which hop the running code belongs to, and the hops remembered for later sends.

A hop is one handling of one message. Whatever the handler sends names the
hop as its parent. A batch consumer handles many messages at once, so during a
batch the parent is looked up by correlation id; a message placed in a later
batch (it waited for capacity) finds its last hop in a small bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from broker.headers import TRACEPARENT
from broker.trace_context import (
    SAMPLED,
    ZERO_TRACE,
    TraceContext,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)

RECENT_LIMIT = 10_000  # hops remembered by correlation id, for batch consumers' later sends


@dataclass(frozen=True, slots=True)
class Batch:
    hops: Mapping[str, TraceContext]  # by correlation id (hex)


_current: ContextVar[TraceContext | Batch | None] = ContextVar("rally_trace", default=None)
recent: OrderedDict[str, TraceContext] = OrderedDict()


def current() -> TraceContext | None:
    """The hop this code runs in, outside batches."""
    scope = _current.get()
    return scope if isinstance(scope, TraceContext) else None


def enter(scope: TraceContext | Batch) -> Token[TraceContext | Batch | None]:
    return _current.set(scope)


def leave(token: Token[TraceContext | Batch | None]) -> None:
    _current.reset(token)


def parent_for(correlation_hex: str | None) -> TraceContext | None:
    scope = _current.get()
    if isinstance(scope, TraceContext):
        return scope
    if correlation_hex is None:
        return None
    if scope is not None:
        hop = scope.hops.get(correlation_hex)
        if hop is not None:
            return hop
    return recent.get(correlation_hex)


def remember(correlation_hex: str, hop: TraceContext) -> None:
    recent[correlation_hex] = hop
    recent.move_to_end(correlation_hex)  # the most recent stays longest
    if len(recent) > RECENT_LIMIT:
        # (an OrderedDict: a plain dict's first key is found by skipping the holes that
        # earlier deletions left at its front, slower the longer a process runs)
        recent.popitem(last=False)


def recorded_traceparent(correlation_id: UUID | None) -> str:
    """The header for a message recorded now and sent later (an outbox row, an event).

    Its parent is the hop being handled; with none, it starts from the correlation id.
    """
    correlation_hex = correlation_id.hex if correlation_id is not None else None
    parent = parent_for(correlation_hex)
    if parent is not None:
        return parent.traceparent
    trace_id = correlation_hex if correlation_hex and correlation_hex != ZERO_TRACE else None
    return f"00-{trace_id or new_trace_id()}-{new_span_id()}-{SAMPLED}"


def stored_headers(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The ``traceparent`` an event's metadata keeps, as headers for its publication."""
    context = parse_traceparent(metadata.get("traceparent"))
    return {TRACEPARENT: context.traceparent} if context is not None else {}
