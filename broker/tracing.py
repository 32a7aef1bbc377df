"""W3C trace context on every message, and OpenTelemetry spans where an SDK is configured.

The ``traceparent`` header (``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``)
travels on every message rallypoint sends, so one trace follows a task from
the client's ``SubmitTask`` through the workers to the agent and back.

- **The trace id is the correlation id.** A UUID is 128 bits: a message that
  starts a piece of work gets trace id = its correlation id in hex, and every
  later message of that work keeps both, so the ``trace_id`` a log line binds
  and its ``correlation_id`` are the same digits (without the dashes).
- **A hop is one handling of one message.** The consumer gives it a new span
  id whose parent is the span id of the incoming header (a header that is
  missing or malformed is ignored: the hop starts a trace from the correlation
  id instead; it never fails the message). Whatever the handler sends — a
  direct publish, an outbox row, the metadata of the events it records, which
  the relay turns into the events' headers — names this hop as its parent.
- **Batch consumers** (the allocator) handle many messages at once: each gets
  its own hop, and a message sent during the batch takes as parent the hop of
  the message with its correlation id. A task placed in a later batch (it
  waited for capacity) finds its last hop in a small bounded memory.
- **OpenTelemetry** is optional (``pip install rallypoint[otel]``) and imported
  lazily. With an SDK ``TracerProvider`` installed (globally, or for rallypoint
  only with :func:`use_tracer_provider`) each hop is a CONSUMER span and each
  direct publish a PRODUCER span, with the parents above; without one only the
  headers and the log fields travel. Heartbeats carry a header but make no
  spans: one per agent every few seconds would drown the traces that matter.
"""

from __future__ import annotations

import random
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import structlog

from broker.headers import TRACEPARENT as TRACEPARENT  # re-exported: the header name
from broker.logs import message_fields

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from broker.router import Incoming
    from contracts import Envelope

UNTRACED = frozenset({"Heartbeat"})  # message types that get a header but no spans
RECENT_LIMIT = 10_000  # hops remembered by correlation id, for batch consumers' later sends
SAMPLED = "01"

_HEADER = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_HEX_OR_DASH = frozenset("0123456789abcdef-")
_ZERO_TRACE = "0" * 32
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


# ---- the header ----


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
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
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
    return hex_id if hex_id != _ZERO_TRACE else None


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


# ---- the hop being handled ----


@dataclass(frozen=True, slots=True)
class _Batch:
    hops: Mapping[str, TraceContext]  # by correlation id (hex)


_current: ContextVar[TraceContext | _Batch | None] = ContextVar("rally_trace", default=None)
_span: ContextVar[Span | None] = ContextVar("rally_span", default=None)  # the hop's, with OTel
_recent: OrderedDict[str, TraceContext] = OrderedDict()


def current() -> TraceContext | None:
    """The hop this code runs in, outside batches."""
    scope = _current.get()
    return scope if isinstance(scope, TraceContext) else None


def _parent_for(correlation_hex: str | None) -> TraceContext | None:
    scope = _current.get()
    if isinstance(scope, TraceContext):
        return scope
    if correlation_hex is None:
        return None
    if scope is not None:
        hop = scope.hops.get(correlation_hex)
        if hop is not None:
            return hop
    return _recent.get(correlation_hex)


def _remember(correlation_hex: str, hop: TraceContext) -> None:
    _recent[correlation_hex] = hop
    _recent.move_to_end(correlation_hex)  # the most recent stays longest
    if len(_recent) > RECENT_LIMIT:
        # (an OrderedDict: a plain dict's first key is found by skipping the holes that
        # earlier deletions left at its front, slower the longer a process runs)
        _recent.popitem(last=False)


def recorded_traceparent(correlation_id: UUID | None) -> str:
    """The header for a message recorded now and sent later (an outbox row, an event).

    Its parent is the hop being handled; with none, it starts from the correlation id.
    """
    correlation_hex = correlation_id.hex if correlation_id is not None else None
    parent = _parent_for(correlation_hex)
    if parent is not None:
        return parent.traceparent
    trace_id = correlation_hex if correlation_hex and correlation_hex != _ZERO_TRACE else None
    return f"00-{trace_id or new_trace_id()}-{new_span_id()}-{SAMPLED}"


def stored_headers(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The ``traceparent`` an event's metadata keeps, as headers for its publication."""
    context = parse_traceparent(metadata.get("traceparent"))
    return {TRACEPARENT: context.traceparent} if context is not None else {}


def inject(
    headers: Mapping[str, Any] | None,
    envelope: Envelope[Any],
    exchange: str,
    routing_key: str,
    sender: str,
) -> dict[str, Any]:
    """``headers`` plus the ``traceparent`` of a message published now (a PRODUCER span).

    A header the caller set is kept as it is.
    """
    out = dict(headers) if headers else {}
    if TRACEPARENT in out:
        return out
    correlation_hex = envelope.correlation_id.hex
    parent = _parent_for(correlation_hex)
    tracer = _tracer() if envelope.type not in UNTRACED else None
    header = None
    if tracer is not None:
        header = _producer_span(
            tracer, parent, correlation_hex, envelope, exchange, routing_key, sender
        )
    if header is None:
        if parent is not None:
            header = parent.traceparent
        else:
            trace_id = correlation_hex if correlation_hex != _ZERO_TRACE else new_trace_id()
            header = f"00-{trace_id}-{new_span_id()}-{SAMPLED}"
    out[TRACEPARENT] = header
    return out


class _Delivery(Protocol):
    @property
    def correlation_id(self) -> str | None: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def type(self) -> str | None: ...


class ConsumerTracer:
    """The tracing side of one consumer: a hop per delivery, or per message of a batch."""

    __slots__ = ("batched", "queue", "replica", "worker")

    def __init__(self, worker: str, replica: str, queue: str, *, batched: bool = False) -> None:
        self.worker = worker
        self.replica = replica
        self.queue = queue
        self.batched = batched

    def consuming(self, message: _Delivery, headers: Mapping[str, Any]) -> _Consuming:
        """``with tracer.consuming(delivery, headers):`` around the handling of one delivery."""
        return _Consuming(self, message, headers)

    def decoded(self, message_type: str) -> None:
        """The delivery is a ``message_type``: name its span so (the AMQP ``type`` may be unset)."""
        span = _span.get()
        if span is not None:
            span.update_name(f"process {message_type}")
            span.set_attribute("rally.message_type", message_type)

    async def batch(
        self,
        handler: Callable[[Sequence[Incoming[Any]]], Awaitable[Mapping[int, BaseException] | None]],
        items: Sequence[Incoming[Any]],
    ) -> Mapping[int, BaseException] | None:
        """Run a batch handler with a hop for each message in it."""
        tracer = _tracer()
        hops: dict[str, TraceContext] = {}
        spans: list[Span] = []
        for incoming in items:
            envelope = incoming.envelope
            correlation_hex = envelope.correlation_id.hex
            parent = parse_traceparent(incoming.headers.get(TRACEPARENT))
            span = None
            if tracer is not None and envelope.type not in UNTRACED:
                span = _consumer_span(
                    tracer, self, parent, correlation_hex, envelope.type, str(envelope.id)
                )
            if span is not None:
                spans.append(span)
                hop = _hop_of(span, parent)
            else:
                hop = _new_hop(parent, correlation_hex)
            hops[correlation_hex] = hop
            if envelope.type not in UNTRACED:
                _remember(correlation_hex, hop)
        token = _current.set(_Batch(hops))
        try:
            return await handler(items)
        finally:
            _current.reset(token)
            for span in spans:
                span.end()


class _Consuming:
    """The context manager of one delivery's hop (a class: cheaper than a generator)."""

    __slots__ = (
        "_headers",
        "_log",
        "_message",
        "_otel",
        "_span",
        "_span_token",
        "_token",
        "_tracer",
    )

    def __init__(
        self, tracer: ConsumerTracer, message: _Delivery, headers: Mapping[str, Any]
    ) -> None:
        self._tracer = tracer
        self._message = message
        self._headers = headers
        self._span: Span | None = None
        self._otel: object = None

    def __enter__(self) -> TraceContext:
        message = self._message
        parent = parse_traceparent(self._headers.get(TRACEPARENT))
        otel = span = None
        if not self._tracer.batched and message.type not in UNTRACED:
            otel = _tracer()
        if otel is not None:
            span = self._span = _consumer_span(
                otel,
                self._tracer,
                parent,
                trace_id_of(message.correlation_id),
                message.type or "message",
                message.message_id,
            )
        if span is not None:
            hop = _hop_of(span, parent)
            self._otel = _attach(span)  # the handler's own spans nest under this one
            self._span_token = _span.set(span)
        elif parent is not None:
            hop = TraceContext(parent.trace_id, new_span_id(), parent.flags, parent.span_id)
        else:  # no usable header: the trace starts here, from the correlation id
            trace_id = trace_id_of(message.correlation_id) or new_trace_id()
            hop = TraceContext(trace_id, new_span_id())
        self._token = _current.set(hop)
        self._log = message_fields(trace_id=hop.trace_id, span_id=hop.span_id)
        self._log.__enter__()
        return hop

    def __exit__(self, *exc: object) -> None:
        self._log.__exit__()
        _current.reset(self._token)
        if self._span is not None:
            _span.reset(self._span_token)
            _detach(self._otel)
            self._span.end()


def _new_hop(parent: TraceContext | None, correlation_hex: str | None) -> TraceContext:
    if parent is not None:
        return TraceContext(parent.trace_id, new_span_id(), parent.flags, parent.span_id)
    trace_id = correlation_hex if correlation_hex and correlation_hex != _ZERO_TRACE else None
    return TraceContext(trace_id or new_trace_id(), new_span_id())


def mark_failed(description: str) -> None:
    """Mark the span of the hop being handled as failed (a retry or a dead letter)."""
    span = _span.get()
    if span is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, description))


# ---- OpenTelemetry, when an SDK is there ----


class _TracerCache:
    """The provider in use and our tracer from it, looked up again at most once a second:
    a provider installed while running is picked up that fast, at no cost per message."""

    def __init__(self) -> None:
        self.available: bool | None = None  # None: not looked for yet
        self.override: TracerProvider | None = None
        self.tracer: Tracer | None = None
        self.until = 0.0  # monotonic time until which ``tracer`` holds


_tracer_cache = _TracerCache()
_failures = 0
log = structlog.get_logger(__name__)
_wanted_trace_id: ContextVar[int] = ContextVar("rally_wanted_trace_id", default=0)
RECHECK_S = 1.0


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Trace with this SDK provider instead of the global one (None: back to the global)."""
    _tracer_cache.override = provider
    _tracer_cache.until = 0.0


def _tracer() -> Tracer | None:
    cache = _tracer_cache
    now = time.monotonic()
    if now < cache.until:
        return cache.tracer
    cache.until = now + RECHECK_S
    if cache.available is None:
        try:
            import opentelemetry.sdk.trace
            import opentelemetry.trace  # noqa: F401
        except ImportError:  # the otel extra is not installed: headers only
            cache.available = False
        else:
            cache.available = True
    if not cache.available:
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = cache.override or trace.get_tracer_provider()
    tracer = None
    if isinstance(provider, TracerProvider):
        tracer = provider.get_tracer("rallypoint")  # the same object for the same provider
        if tracer is not cache.tracer:
            _use_correlation_trace_ids(tracer)
    cache.tracer = tracer
    return tracer


def _use_correlation_trace_ids(tracer: Tracer) -> None:
    """Let a span with no parent take the trace id we choose (the correlation id).

    The SDK draws a root span's trace id from its tracer's id generator and
    offers no other way in; this wraps the generator of rallypoint's own tracer
    only, and answers with the wanted id while one is set, else as before.
    """
    from opentelemetry.sdk.trace import Tracer as SdkTracer
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class CorrelationTraceIds(IdGenerator):
        def __init__(self, inner: IdGenerator) -> None:
            self.inner = inner

        def generate_span_id(self) -> int:
            return self.inner.generate_span_id()

        def generate_trace_id(self) -> int:
            return _wanted_trace_id.get() or self.inner.generate_trace_id()

    if isinstance(tracer, SdkTracer) and type(tracer.id_generator).__name__ != (
        "CorrelationTraceIds"
    ):
        tracer.id_generator = CorrelationTraceIds(tracer.id_generator)


def _parent_context(parent: TraceContext | None) -> Any:
    from opentelemetry import trace
    from opentelemetry.context import Context

    if parent is None:
        return Context()  # a root: not a child of whatever span the caller has open
    remote = trace.SpanContext(
        int(parent.trace_id, 16),
        int(parent.span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(parent.flags, 16)),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(remote), Context())


def _start_span(
    tracer: Tracer,
    name: str,
    kind: Any,
    parent: TraceContext | None,
    trace_id: str | None,
    attributes: dict[str, Any],
    links: Sequence[Any] = (),
) -> Span | None:
    """A started span, or None if the SDK failed: tracing never costs a message."""
    token: Token[int] | None = None
    try:
        context = _parent_context(parent)
        if parent is None and trace_id is not None:
            token = _wanted_trace_id.set(int(trace_id, 16))
        return tracer.start_span(name, context, kind, attributes, links)
    except Exception:
        global _failures
        _failures += 1
        if _failures == 1:  # once: a broken exporter set-up would log per message
            log.warning("tracing.span_failed", exc_info=True)
        return None
    finally:
        if token is not None:
            _wanted_trace_id.reset(token)


def _consumer_span(
    tracer: Tracer,
    consumer: ConsumerTracer,
    parent: TraceContext | None,
    correlation_hex: str | None,
    message_type: str,
    message_id: str | None,
) -> Span | None:
    from opentelemetry.trace import SpanKind

    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.destination.name": consumer.queue,
        "messaging.message.id": message_id or "",
        "messaging.message.conversation_id": correlation_hex or "",
        "rally.worker": consumer.worker,
        "rally.replica": consumer.replica,
        "rally.message_type": message_type,
    }
    return _start_span(
        tracer, f"process {message_type}", SpanKind.CONSUMER, parent, correlation_hex, attributes
    )


def _producer_span(
    tracer: Tracer,
    parent: TraceContext | None,
    correlation_hex: str,
    envelope: Envelope[Any],
    exchange: str,
    routing_key: str,
    sender: str,
) -> str | None:
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    links = []
    if parent is None:
        # the caller's own trace (an application span around the submit) stays findable
        caller = trace.get_current_span().get_span_context()
        if caller.is_valid:
            links.append(Link(caller))
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.message.id": str(envelope.id),
        "messaging.message.conversation_id": correlation_hex,
        "rally.sender": sender,
        "rally.message_type": envelope.type,
    }
    trace_id = correlation_hex if correlation_hex != _ZERO_TRACE else None
    span = _start_span(
        tracer, f"send {envelope.type}", SpanKind.PRODUCER, parent, trace_id, attributes, links
    )
    if span is None:
        return None
    header = _hop_of(span, parent).traceparent
    span.end()
    return header


def _hop_of(span: Span, parent: TraceContext | None) -> TraceContext:
    context = span.get_span_context()
    return TraceContext(
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
        f"{int(context.trace_flags) & 0xFF:02x}",
        parent.span_id if parent is not None else None,
    )


def _attach(span: Span) -> object:
    from opentelemetry import context, trace

    return context.attach(trace.set_span_in_context(span))


def _detach(token: object) -> None:
    from opentelemetry import context

    context.detach(token)  # type: ignore[arg-type]
