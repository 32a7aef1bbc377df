"""OpenTelemetry spans around hops and publishes (in-memory exporter, no broker)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import uuid4

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from broker import tracing
from contracts import Envelope, Heartbeat, RegisterAgent


@dataclass
class Delivery:
    correlation_id: str | None
    message_id: str | None = "m-1"
    type: str | None = None


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)


def register() -> Envelope[RegisterAgent]:
    return Envelope.wrap(
        RegisterAgent(agent_id="a1", capabilities=("x",), capacity=1), sender="agent-a1"
    )


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


def test_a_message_sent_from_nowhere_is_a_root_span_in_its_correlation_trace(
    exporter: InMemorySpanExporter,
) -> None:
    env = register()
    headers = tracing.inject(None, env, "ns.commands", "registry.RegisterAgent", "agent-a1")
    span = only(exporter, "send RegisterAgent")
    assert span.parent is None
    assert span.kind == SpanKind.PRODUCER
    assert span.context.trace_id == env.correlation_id.int
    assert headers["traceparent"] == f"00-{env.correlation_id.hex}-{span.context.span_id:016x}-01"


def test_a_hop_is_a_consumer_span_under_the_sender_and_over_what_it_sends(
    exporter: InMemorySpanExporter,
) -> None:
    env = register()
    sent = tracing.inject(None, env, "ns.commands", "registry.RegisterAgent", "agent-a1")
    consumer = tracing.ConsumerTracer("registry", "0", "ns.q.registry")
    with consumer.consuming(Delivery(str(env.correlation_id)), sent) as hop:
        consumer.decoded("RegisterAgent")  # the AMQP type was not set: named once decoded
        reply = Envelope.wrap(Heartbeat(agent_id="a1", load=0), sender="x", caused_by=env)
        tracing.inject(None, reply, "ns.commands", "registry.Heartbeat", "registry")
        tracing.mark_failed("dead-lettered: invalid")
    send = only(exporter, "send RegisterAgent")
    process = only(exporter, "process RegisterAgent")
    assert process.kind == SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_id == send.context.trace_id
    assert f"{process.context.span_id:016x}" == hop.span_id
    assert (process.attributes or {})["rally.worker"] == "registry"
    assert process.status.status_code == StatusCode.ERROR
    # heartbeats carry a header but make no span
    assert [s.name for s in exporter.get_finished_spans()] == [
        "send RegisterAgent",
        "process RegisterAgent",
    ]


class Exploding(SpanProcessor):
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        raise RuntimeError("a broken exporter set-up")


def test_a_broken_sdk_costs_no_message() -> None:
    provider = TracerProvider()
    provider._active_span_processor._span_processors = (Exploding(),)
    tracing.use_tracer_provider(provider)
    try:
        env = register()
        headers = tracing.inject(None, env, "ex", "key", "me")
        assert tracing.parse_traceparent(headers["traceparent"]) is not None
        consumer = tracing.ConsumerTracer("registry", "0", "q")
        with consumer.consuming(Delivery(str(uuid4()), type="RegisterAgent"), headers) as hop:
            assert hop.trace_id == env.correlation_id.hex
    finally:
        tracing.use_tracer_provider(None)


def test_the_global_provider_is_used_when_one_is_set() -> None:
    script = textwrap.dedent(
        """
        import time

        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from broker import tracing
        from contracts import Envelope, RegisterAgent

        payload = RegisterAgent(agent_id="a", capabilities=("x",), capacity=1)
        env = Envelope.wrap(payload, sender="a")
        tracing.inject(None, env, "ex", "key", "a")  # before: no SDK, no span, no error
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        time.sleep(tracing.RECHECK_S + 0.1)  # a provider set while running counts within 1 s
        tracing.inject(None, env, "ex", "key", "a")
        (span,) = exporter.get_finished_spans()
        assert span.context.trace_id == env.correlation_id.int, span
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
