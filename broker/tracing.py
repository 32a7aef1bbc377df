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

This module is the tracer of publishes (:func:`inject`) and of consumers
(:class:`ConsumerTracer`); the header is ``trace_context``, the hop being
handled and the remembered ones ``trace_hops``, the OpenTelemetry glue
``trace_otel``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from broker.headers import TRACEPARENT as TRACEPARENT  # re-exported: the header name
from broker.logs import message_fields

# The header, the hops and the OpenTelemetry glue live in modules of their own; their public
# names stay importable from here, where the rest of the code has always found them.
from broker.trace_context import SAMPLED as SAMPLED
from broker.trace_context import ZERO_TRACE, new_hop
from broker.trace_context import TraceContext as TraceContext
from broker.trace_context import format_traceparent as format_traceparent
from broker.trace_context import new_span_id as new_span_id
from broker.trace_context import new_trace_id as new_trace_id
from broker.trace_context import parse_traceparent as parse_traceparent
from broker.trace_context import trace_id_of as trace_id_of
from broker.trace_hops import RECENT_LIMIT as RECENT_LIMIT
from broker.trace_hops import Batch, enter, leave, parent_for, remember
from broker.trace_hops import current as current
from broker.trace_hops import recorded_traceparent as recorded_traceparent
from broker.trace_hops import stored_headers as stored_headers
from broker.trace_otel import RECHECK_S as RECHECK_S
from broker.trace_otel import (
    attach,
    consumer_span,
    current_span,
    detach,
    hop_of,
    producer_span,
)
from broker.trace_otel import mark_failed as mark_failed
from broker.trace_otel import tracer as otel_tracer
from broker.trace_otel import use_tracer_provider as use_tracer_provider

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from broker.router import Incoming
    from contracts import Envelope

UNTRACED = frozenset({"Heartbeat"})  # message types that get a header but no spans


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
    parent = parent_for(correlation_hex)
    tracer = otel_tracer() if envelope.type not in UNTRACED else None
    header = None
    if tracer is not None:
        header = producer_span(
            tracer, parent, correlation_hex, envelope, exchange, routing_key, sender
        )
    if header is None:
        if parent is not None:
            header = parent.traceparent
        else:
            trace_id = correlation_hex if correlation_hex != ZERO_TRACE else new_trace_id()
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
        span = current_span.get()
        if span is not None:
            span.update_name(f"process {message_type}")
            span.set_attribute("rally.message_type", message_type)

    def woken(self, message_type: str, message_id: str | None, headers: Mapping[str, Any]) -> None:
        """A wake-up taken without decoding: a hop of its own, remembered for what follows.

        The event's ``traceparent`` names the task's trace (its trace id is the correlation
        id), so whatever the worker records for that task next continues from this hop.
        """
        parent = parse_traceparent(headers.get(TRACEPARENT))
        if parent is None or message_type in UNTRACED:
            return
        tracer = otel_tracer()
        span = None
        if tracer is not None:
            span = consumer_span(tracer, self, parent, parent.trace_id, message_type, message_id)
        hop = hop_of(span, parent) if span is not None else new_hop(parent, parent.trace_id)
        remember(parent.trace_id, hop)
        if span is not None:
            span.end()

    async def batch(
        self,
        handler: Callable[[Sequence[Incoming[Any]]], Awaitable[Mapping[int, BaseException] | None]],
        items: Sequence[Incoming[Any]],
    ) -> Mapping[int, BaseException] | None:
        """Run a batch handler with a hop for each message in it."""
        tracer = otel_tracer()
        hops: dict[str, TraceContext] = {}
        spans: list[Span] = []
        for incoming in items:
            envelope = incoming.envelope
            correlation_hex = envelope.correlation_id.hex
            parent = parse_traceparent(incoming.headers.get(TRACEPARENT))
            span = None
            if tracer is not None and envelope.type not in UNTRACED:
                span = consumer_span(
                    tracer, self, parent, correlation_hex, envelope.type, str(envelope.id)
                )
            if span is not None:
                spans.append(span)
                hop = hop_of(span, parent)
            else:
                hop = new_hop(parent, correlation_hex)
            hops[correlation_hex] = hop
            if envelope.type not in UNTRACED:
                remember(correlation_hex, hop)
        token = enter(Batch(hops))
        try:
            return await handler(items)
        finally:
            leave(token)
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
            otel = otel_tracer()
        if otel is not None:
            span = self._span = consumer_span(
                otel,
                self._tracer,
                parent,
                trace_id_of(message.correlation_id),
                message.type or "message",
                message.message_id,
            )
        if span is not None:
            hop = hop_of(span, parent)
            self._otel = attach(span)  # the handler's own spans nest under this one
            self._span_token = current_span.set(span)
        elif parent is not None:
            hop = TraceContext(parent.trace_id, new_span_id(), parent.flags, parent.span_id)
        else:  # no usable header: the trace starts here, from the correlation id
            trace_id = trace_id_of(message.correlation_id) or new_trace_id()
            hop = TraceContext(trace_id, new_span_id())
        self._token = enter(hop)
        self._log = message_fields(trace_id=hop.trace_id, span_id=hop.span_id)
        self._log.__enter__()
        return hop

    def __exit__(self, *exc: object) -> None:
        self._log.__exit__()
        leave(self._token)
        if self._span is not None:
            current_span.reset(self._span_token)
            detach(self._otel)
            self._span.end()
