"""The W3C ``traceparent`` header: one hop's context, parsed and formatted.

``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``; a correlation id (a UUID,
128 bits) doubles as the trace id of the work it starts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from uuid import UUID

SAMPLED = "01"

_HEADER = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_HEX_OR_DASH = frozenset("0123456789abcdef-")
ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One hop: its trace, its own span id, the span id it came from, the trace flags."""

    trace_id: str  # 32 lowercase hex digits, not all zero
    span_id: str  # 16 lowercase hex digits, not all zero
    flags: str = SAMPLED
    parent_id: str | None = None

    @property
    def traceparent(self) -> str:
        """The header a message sent from this hop carries: this hop is its parent."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(value: object) -> TraceContext | None:
    """The context a ``traceparent`` header names, or None if it is absent or invalid.

    Never raises: a header is a hint from whoever sent the message, and a bad one
    must not cost the message. Follows W3C Trace Context level 1: version ``ff``
    and all-zero ids are invalid; a later version may append fields after a dash.
    """
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    if len(value) == 55 and value[2] == "-" and value[35] == "-" and value[52] == "-":
        # the usual case, without a regex: version 00, four fields
        if not _HEX_OR_DASH.issuperset(value):
            return None
        version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:]
    else:
        value = value.strip()
        match = _HEADER.match(value)
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if len(value) != 55 and (version == "00" or value[55] != "-"):
        return None
    return TraceContext(trace_id, span_id, flags)


def format_traceparent(trace_id: str, span_id: str, flags: str = SAMPLED) -> str:
    """``00-<trace>-<span>-<flags>``; raises ValueError on ids that are not valid."""
    header = f"00-{trace_id}-{span_id}-{flags}"
    if len(header) != 55 or parse_traceparent(header) is None:
        raise ValueError(f"not a valid trace context: trace {trace_id!r}, span {span_id!r}")
    return header


def trace_id_of(correlation_id: object) -> str | None:
    """A correlation id (UUID or its text) as a trace id, or None if it is not a usable one."""
    if isinstance(correlation_id, UUID):
        hex_id = correlation_id.hex
    elif isinstance(correlation_id, str):
        try:
            hex_id = UUID(correlation_id).hex
        except ValueError:
            return None
    else:
        return None
    return hex_id if hex_id != ZERO_TRACE else None


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


def new_hop(parent: TraceContext | None, correlation_hex: str | None) -> TraceContext:
    """A hop that follows ``parent``; with none, a trace that starts from the correlation id."""
    if parent is not None:
        return TraceContext(parent.trace_id, new_span_id(), parent.flags, parent.span_id)
    trace_id = correlation_hex if correlation_hex and correlation_hex != ZERO_TRACE else None
    return TraceContext(trace_id or new_trace_id(), new_span_id())
