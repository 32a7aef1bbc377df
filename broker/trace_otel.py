"""OpenTelemetry spans for hops and publishes, where an SDK is configured.

Optional (``pip install rallypoint[otel]``) and imported lazily. With an SDK
``TracerProvider`` installed (globally, or for rallypoint only with
:func:`use_tracer_provider`) each hop is a CONSUMER span and each direct
publish a PRODUCER span; without one this module answers None and only the
headers travel. A failing SDK never costs a message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from broker.trace_context import ZERO_TRACE, TraceContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from contracts import Envelope

# the span of the hop being handled, when there is one
current_span: ContextVar[Span | None] = ContextVar("rally_span", default=None)


class Consumer(Protocol):
    """What a consumer span names: the queue, and the worker and replica reading it."""

    @property
    def queue(self) -> str: ...

    @property
    def worker(self) -> str: ...

    @property
    def replica(self) -> str: ...


def mark_failed(description: str) -> None:
    """Mark the span of the hop being handled as failed (a retry or a dead letter)."""
    span = current_span.get()
    if span is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, description))


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


def tracer() -> Tracer | None:
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


def consumer_span(
    tracer: Tracer,
    consumer: Consumer,
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


def producer_span(
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
    trace_id = correlation_hex if correlation_hex != ZERO_TRACE else None
    span = _start_span(
        tracer, f"send {envelope.type}", SpanKind.PRODUCER, parent, trace_id, attributes, links
    )
    if span is None:
        return None
    header = hop_of(span, parent).traceparent
    span.end()
    return header


def hop_of(span: Span, parent: TraceContext | None) -> TraceContext:
    context = span.get_span_context()
    return TraceContext(
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
        f"{int(context.trace_flags) & 0xFF:02x}",
        parent.span_id if parent is not None else None,
    )


def attach(span: Span) -> object:
    from opentelemetry import context, trace

    return context.attach(trace.set_span_in_context(span))


def detach(token: object) -> None:
    from opentelemetry import context

    context.detach(token)  # type: ignore[arg-type]
