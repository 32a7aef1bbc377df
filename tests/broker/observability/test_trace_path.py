"""One task's trace, followed through client, task manager, allocator and agent and back.

Everything runs in this process against the real broker, with an in-memory
OpenTelemetry exporter standing in for a collector: the spans must share the
task's trace id (the correlation id) and chain from the client's submit to the
client's receipt of the outcome. The store must keep the trace context too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from broker import tracing
from broker.connection import BrokerConnection
from broker.settings import BrokerSettings
from sdk import Agent, Client, Task
from workers.runtime.services import run_services
from workers.runtime.settings import WorkerSettings
from workers.store import open_store

pytestmark = pytest.mark.broker


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


def who(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("rally.worker") or attributes.get("rally.sender"))


def chain(spans: Sequence[ReadableSpan], last: ReadableSpan) -> list[ReadableSpan]:
    """``last`` and its ancestors, root first; fails on a parent that is not there."""
    by_id = {span.context.span_id: span for span in spans}
    out = [last]
    while out[-1].parent is not None:
        parent = by_id.get(out[-1].parent.span_id)
        assert parent is not None, f"the parent of {out[-1].name} was never recorded"
        out.append(parent)
    return out[::-1]


async def test_one_task_is_one_trace_from_submit_to_outcome(
    broker: BrokerConnection,
    worker_settings: WorkerSettings,
    sdk_settings: BrokerSettings,
    exporter: InMemorySpanExporter,
) -> None:
    agent = Agent("trace-agent", capacity=2, heartbeat_interval_s=0.3, settings=sdk_settings)
    broker.test_queues += [f"{broker.topology.namespace}.inbox.trace-agent"]  # type: ignore[attr-defined]
    broker.test_queues += [f"{broker.topology.namespace}.inbox.trace-agent.dlq"]  # type: ignore[attr-defined]

    @agent.capability("echo")
    async def echo(task: Task) -> dict[str, Any]:
        await task.progress(0.5, "halfway")
        return {"echo": task.payload}

    async with run_services(worker_settings, workers=["all"], replica="0"):
        await agent.start()
        try:
            async with Client("trace-client", settings=sdk_settings) as client:
                handle = await client.submit("echo", {"n": 1})
                assert await handle.result(timeout=30) == {"echo": {"n": 1}}
        finally:
            await agent.stop(timeout=5)

    spans = exporter.get_finished_spans()
    (submit,) = [s for s in spans if s.name == "send SubmitTask" and who(s) == "trace-client"]
    attributes = submit.attributes or {}
    trace_id = submit.context.trace_id
    # the trace id is the correlation id: the submit's own id, as it started the work
    assert f"{trace_id:032x}" == attributes["messaging.message.conversation_id"]
    assert f"{trace_id:032x}" == str(attributes["messaging.message.id"]).replace("-", "")
    assert submit.parent is None
    assert submit.kind == SpanKind.PRODUCER

    mine = [s for s in spans if s.context.trace_id == trace_id]
    (received,) = [s for s in mine if s.name == "process TaskOutcome"]
    path = [(who(s), s.name) for s in chain(mine, received)]
    assert path[0] == ("trace-client", "send SubmitTask")
    assert path[1] == ("tasks", "process SubmitTask")
    assert path[2][0] == "allocator"
    assert path[2][1] in ("process TaskSubmitted", "process TaskReady")
    assert path[3:] == [
        ("agent", "process AssignTask"),
        ("trace-agent", "send ReportTaskSucceeded"),
        ("tasks", "process ReportTaskSucceeded"),
        ("client", "process TaskOutcome"),
    ]
    # every hop of the task is in this one trace, the reports along the way too
    names = {s.name for s in mine}
    assert {"send ReportTaskStarted", "send ReportTaskProgress"} <= names
    assert {"process ReportTaskStarted", "process ReportTaskProgress"} <= names
    assert all(s.kind == SpanKind.CONSUMER for s in mine if s.name.startswith("process "))

    # the store keeps the context with the events, so the relay can hand it on
    store = open_store(worker_settings.store_url)
    await store.start()
    try:
        records = await store.read(f"task-{handle.task_id}")
    finally:
        await store.close()
    for record in records:
        context = tracing.parse_traceparent(record.metadata.get("traceparent"))
        if record.metadata.get("worker") == "tasks":
            assert context is not None, record.type
            assert context.trace_id == f"{trace_id:032x}"
