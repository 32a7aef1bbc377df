"""W3C traceparent: parse, format, and how a hop hands its context on (no broker, no I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import trace_hops, tracing
from broker.logs import current_message_fields
from broker.router import Incoming
from contracts import Envelope, Heartbeat, RegisterAgent

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Delivery:
    correlation_id: str | None
    message_id: str | None = "m-1"
    type: str | None = "RegisterAgent"


def envelope(correlation: UUID | None = None) -> Envelope[RegisterAgent]:
    payload = RegisterAgent(agent_id="a1", capabilities=("crawl",), capacity=1)
    return Envelope.wrap(payload, sender="test", correlation_id=correlation)


def test_a_valid_header_is_read_as_it_is() -> None:
    context = tracing.parse_traceparent(GOOD)
    assert context == tracing.TraceContext(
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01"
    )
    assert context is not None
    assert context.traceparent == GOOD
    assert tracing.parse_traceparent(GOOD.encode()) == context  # AMQP may hand over bytes
    assert tracing.parse_traceparent(f"  {GOOD} ") == context  # surrounding blanks are allowed


def test_a_later_version_may_carry_more_fields() -> None:
    context = tracing.parse_traceparent("01" + GOOD[2:] + "-what-comes-next")
    assert context is not None
    assert context.span_id == "00f067aa0ba902b7"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        42,
        ["00", "x"],
        "garbage",
        GOOD.upper(),  # hex must be lowercase
        "ff" + GOOD[2:],  # version ff is forbidden
        GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32),  # zero trace id
        GOOD.replace("00f067aa0ba902b7", "0" * 16),  # zero span id
        GOOD + "-extra",  # version 00 has exactly four fields
        GOOD[:-1],
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        b"\xff\xfe-not-ascii",
    ],
)
def test_a_bad_header_is_ignored(value: object) -> None:
    assert tracing.parse_traceparent(value) is None


@given(st.one_of(st.text(max_size=80), st.binary(max_size=80), st.integers(), st.none()))
def test_parsing_never_raises(value: object) -> None:
    tracing.parse_traceparent(value)


def test_format_checks_what_it_writes() -> None:
    assert (
        tracing.format_traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7") == GOOD
    )
    with pytest.raises(ValueError, match="not a valid trace context"):
        tracing.format_traceparent("0" * 32, "00f067aa0ba902b7")
    with pytest.raises(ValueError, match="not a valid trace context"):
        tracing.format_traceparent("abc", "00f067aa0ba902b7")


def test_the_trace_id_is_the_correlation_id() -> None:
    correlation = uuid4()
    assert tracing.trace_id_of(correlation) == correlation.hex
    assert tracing.trace_id_of(str(correlation)) == correlation.hex
    assert tracing.trace_id_of("not a uuid") is None
    assert tracing.trace_id_of(UUID(int=0)) is None
    assert tracing.trace_id_of(None) is None


def test_a_message_sent_with_no_hop_starts_its_trace_from_its_correlation_id() -> None:
    env = envelope()
    headers = tracing.inject({"x": 1}, env, "ns.commands", "registry.RegisterAgent", "test")
    context = tracing.parse_traceparent(headers["traceparent"])
    assert context is not None
    assert context.trace_id == env.correlation_id.hex
    assert headers["x"] == 1
    recorded = tracing.parse_traceparent(tracing.recorded_traceparent(env.correlation_id))
    assert recorded is not None
    assert recorded.trace_id == env.correlation_id.hex


def test_a_header_the_caller_set_is_kept() -> None:
    headers = tracing.inject({"traceparent": GOOD}, envelope(), "ex", "key", "test")
    assert headers["traceparent"] == GOOD


def test_a_hop_continues_the_trace_it_was_sent_in_and_hands_itself_on() -> None:
    consumer = tracing.ConsumerTracer("tasks", "0", "ns.q.tasks")
    correlation = uuid4()
    with consumer.consuming(Delivery(str(correlation)), {"traceparent": GOOD}) as hop:
        assert hop.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"  # the header wins
        assert hop.parent_id == "00f067aa0ba902b7"
        assert hop.span_id not in ("00f067aa0ba902b7", "0" * 16)
        assert tracing.current() == hop
        bound = current_message_fields()
        assert (bound["trace_id"], bound["span_id"]) == (hop.trace_id, hop.span_id)
        # everything sent from here names this hop as its parent
        assert tracing.recorded_traceparent(correlation) == hop.traceparent
        sent = tracing.inject(None, envelope(correlation), "ex", "key", "tasks")
        assert sent["traceparent"] == hop.traceparent
    assert tracing.current() is None
    assert "trace_id" not in current_message_fields()


@pytest.mark.parametrize("bad", ["garbage", GOOD.upper(), b"\x00", 7])
def test_a_hop_with_a_bad_header_starts_from_the_correlation_id(bad: object) -> None:
    consumer = tracing.ConsumerTracer("tasks", "0", "ns.q.tasks")
    correlation = uuid4()
    with consumer.consuming(Delivery(str(correlation)), {"traceparent": bad}) as hop:
        assert hop.trace_id == correlation.hex
        assert hop.parent_id is None
    with consumer.consuming(Delivery("not-a-uuid"), {}) as hop:
        assert tracing.parse_traceparent(hop.traceparent) is not None  # a fresh, valid trace


async def test_a_batch_gives_each_message_its_hop_and_remembers_them() -> None:
    consumer = tracing.ConsumerTracer("allocator", "0", "ns.q.allocator", batched=True)
    first, second = uuid4(), uuid4()
    parent = "00-" + first.hex + "-1111111111111111-01"
    items = [
        Incoming(envelope(first), headers={"traceparent": parent}),
        Incoming(envelope(second), headers={"traceparent": "nonsense"}),
    ]
    seen: dict[UUID, str] = {}

    async def handler(batch: Sequence[Incoming[Any]]) -> Mapping[int, BaseException] | None:
        await asyncio.sleep(0)
        for correlation in (first, second):
            seen[correlation] = tracing.recorded_traceparent(correlation)
        return None

    assert await consumer.batch(handler, items) is None
    one = tracing.parse_traceparent(seen[first])
    two = tracing.parse_traceparent(seen[second])
    assert one is not None
    assert two is not None
    assert one.trace_id == first.hex
    assert one.span_id != "1111111111111111"
    assert two.trace_id == second.hex
    # a task placed in a later batch still finds the hop that last saw it
    assert tracing.recorded_traceparent(first) == seen[first]


async def test_heartbeats_are_not_remembered() -> None:
    consumer = tracing.ConsumerTracer("allocator", "0", "ns.q.allocator", batched=True)
    beat = Envelope.wrap(Heartbeat(agent_id="a1", load=0), sender="a1")

    async def handler(batch: Sequence[Incoming[Any]]) -> None:
        return None

    await consumer.batch(handler, [Incoming(beat)])
    outside = tracing.parse_traceparent(tracing.recorded_traceparent(beat.correlation_id))
    assert outside is not None
    assert outside.trace_id == beat.correlation_id.hex
    assert beat.correlation_id.hex not in trace_hops.recent
