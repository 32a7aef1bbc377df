"""Case 9 of issue 8: bad input reaches the real workers, and nothing breaks.

tests/broker/transport/test_runtime.py shows the consumer dead-letters malformed, invalid
and unknown-type messages once with their reason, and tests/unit/contracts shows
the codec's size limit and version checks. Here the whole fleet (three
replicas of each worker) gets, on each worker's routes: those, plus unknown
versions, raw messages over the 1 MiB limit, and a hypothesis fuzz run of
random envelopes; the SDK refuses an oversized message before it is published.
Every bad message must be dead-lettered with a reason (or refused at publish
with one), leave no trace in the history, stop no worker, and a valid
submission sent in between must be recorded within a second.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import headers as h
from broker.errors import Unroutable
from broker.publisher import Outgoing, Publisher
from contracts import ContractError, MessageTooLarge, SubmitTask, all_types, decode
from tests.support.amqp import take
from tests.support.harness import AGENTS, Harness

pytestmark = [
    pytest.mark.broker,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.asyncio(loop_scope="module"),
]

LIMIT = 1024 * 1024
REASONS = {"malformed", "invalid", "unknown_type", "unknown_version", "too_large"}
ROUTES = ("tasks.SubmitTask", "registry.RegisterAgent", "allocator.AcquireLease")
FUZZ_ROUTES = (*ROUTES, "tasks.ReportTaskSucceeded", "registry.Heartbeat", "nowhere.Nothing")
EXAMPLES = 200
MAX_DELAY_S = 1.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(
    fault_amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    base: Path = tmp_path_factory.mktemp("bad-input")
    async with Harness(
        amqp_url=fault_amqp_url, store_url=f"sqlite:///{base}/rally.db", log_dir=base / "logs"
    ) as harness:
        await harness.start(agents=AGENTS)
        yield harness


def envelope_json(type_name: str, version: int, payload: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": type_name,
        "version": version,
        "correlation_id": str(uuid.uuid4()),
        "sender": "mallory",
        "payload": payload,
    }


def oversized() -> bytes:
    """A well-formed SubmitTask just over the limit (the SDK would never send it)."""
    body = envelope_json("SubmitTask", 1, {"capability": "work", "payload": "x" * LIMIT})
    return json.dumps(body).encode()


BAD: dict[str, tuple[bytes, str]] = {
    "malformed": (b'{"type": "SubmitTask", "version": 1,', "malformed"),
    "not-an-object": (b'["SubmitTask"]', "malformed"),
    "invalid": (
        json.dumps(envelope_json("SubmitTask", 1, {"priority": "high"})).encode(),
        "invalid",
    ),
    "unknown-type": (json.dumps(envelope_json("TeleportTask", 1, {})).encode(), "unknown_type"),
    "unknown-version": (
        json.dumps(envelope_json("RegisterAgent", 99, {"agent_id": "x"})).encode(),
        "unknown_version",
    ),
    "oversized": (oversized(), "too_large"),
}


async def dead_letters(fleet: Harness, want: set[str], timeout: float = 20.0) -> dict[str, str]:
    """message id → reason, from every worker DLQ, until ``want`` are all seen."""
    assert fleet.conn is not None
    topology = fleet.conn.topology
    queues = [f"{topology.worker_queue(w)}.dlq" for w in ("tasks", "registry", "allocator")]
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while not want <= set(seen) and time.monotonic() < deadline:
        for queue in queues:
            for message in await take(fleet.conn, queue, 1000, timeout=0.3):
                reason = str((message.headers or {}).get(h.DL_REASON, ""))
                seen[message.message_id or ""] = reason
    return seen


async def recorded_within(fleet: Harness, sent: dict[uuid.UUID, float]) -> dict[str, float]:
    """How long each valid submission took from publish to its TaskSubmitted in the store."""
    found: dict[str, float] = {}
    deadline = time.monotonic() + 20
    while len(found) < len(sent) and time.monotonic() < deadline:
        for event in (await fleet.history.refresh())[-5000:]:
            task = event.data.get("task_id")
            if event.type == "TaskSubmitted" and task is not None:
                start = sent.get(uuid.UUID(str(task)))
                if start is not None:
                    found[str(task)] = event.recorded_at.timestamp() - start
        await asyncio.sleep(0.1)
    return found


async def test_named_bad_messages_on_every_route_are_dead_lettered_with_their_reason(
    fleet: Harness, record: Callable[[dict[str, Any]], None]
) -> None:
    assert fleet.conn is not None
    publisher = await Publisher(fleet.conn, sender="mallory").start()
    expected: dict[str, str] = {}
    sent: dict[uuid.UUID, float] = {}
    for route in ROUTES:
        for name, (body, reason) in BAD.items():
            message_id = f"bad-{name}-{route}-{uuid.uuid4().hex[:6]}"
            await publisher.publish_raw(
                Outgoing(fleet.conn.topology.commands, route, body, message_id=message_id)
            )
            expected[message_id] = reason
        # valid work in between: it must not wait behind the bad messages
        task_id = uuid.uuid4()
        sent[task_id] = datetime.now(UTC).timestamp()
        await fleet.client.submit("work", {"ms": 1}, task_id=task_id)
    # the SDK refuses an oversized message before it reaches the broker
    with pytest.raises(MessageTooLarge, match="over the limit"):
        await publisher.send(SubmitTask(capability="work", payload="x" * LIMIT))
    too_big = uuid.uuid4()
    with pytest.raises(MessageTooLarge):
        await fleet.client.submit("work", "x" * LIMIT, task_id=too_big)

    seen = await dead_letters(fleet, set(expected))
    delays = await recorded_within(fleet, sent)
    await fleet.history.refresh()
    traces = [e for e in fleet.history.events if str(e.metadata.get("message_id")) in expected]
    fleet.assert_no_crash()
    record(
        {
            "bad_sent": len(expected),
            "dead_lettered": sum(1 for m in expected if m in seen),
            "wrong_reason": sum(1 for m, r in expected.items() if seen.get(m) != r),
            "history_traces": len(traces),
            "max_valid_delay_s": round(max(delays.values(), default=-1), 3),
        }
    )
    assert {m: seen.get(m) for m in expected} == expected
    assert traces == []
    assert not [e for e in fleet.history.events if e.data.get("task_id") == str(too_big)]
    assert len(delays) == len(sent)
    assert max(delays.values()) <= MAX_DELAY_S


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
envelopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(sorted(all_types())) | st.text(max_size=12),
        "version": st.integers(-1, 4) | json_leaf,
        "payload": json_value,
    },
    optional={
        "id": st.uuids().map(str) | st.text(max_size=8),
        "correlation_id": st.uuids().map(str) | json_leaf,
        "causation_id": st.uuids().map(str) | json_leaf,
        "sender": st.text(max_size=16) | json_leaf,
        "sent_at": st.datetimes().map(str) | json_leaf,
        "extra": json_value,
    },
)
bodies = (
    envelopes.map(lambda e: json.dumps(e).encode())
    | st.tuples(envelopes, st.integers(1, 40)).map(lambda p: json.dumps(p[0]).encode()[: -p[1]])
    | st.binary(max_size=64)
)


async def test_fuzzed_envelopes_are_all_refused_or_dead_lettered_and_stop_nothing(
    fleet: Harness, record: Callable[[dict[str, Any]], None]
) -> None:
    assert fleet.conn is not None
    publisher = await Publisher(fleet.conn, sender="fuzz").start()
    published: dict[str, bytes] = {}
    refused: dict[str, str] = {}
    sent: dict[uuid.UUID, float] = {}

    async def send(body: bytes, route: str) -> None:
        message_id = f"fuzz-{len(published) + len(refused)}"
        try:
            await publisher.publish_raw(
                Outgoing(fleet.conn.topology.commands, route, body, message_id=message_id)  # type: ignore[union-attr]
            )
        except Unroutable as exc:
            refused[message_id] = str(exc)
            return
        published[message_id] = body
        if len(published) % 20 == 0:  # a valid submission now and then, timed
            task_id = uuid.uuid4()
            sent[task_id] = datetime.now(UTC).timestamp()
            await fleet.client.submit("work", {"ms": 1}, task_id=task_id)

    examples: list[tuple[bytes, str]] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same 200 envelopes in every run, so a failure reproduces
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=bodies, route=st.sampled_from(FUZZ_ROUTES))
    def fuzz(body: bytes, route: str) -> None:
        examples.append((body, route))

    fuzz()
    for body, route in examples:
        await send(body, route)
    valid = {m for m, body in published.items() if _decodes(body)}
    must_die = set(published) - valid
    seen = await dead_letters(fleet, must_die)
    delays = await recorded_within(fleet, sent)
    await fleet.history.refresh()
    traces = [e for e in fleet.history.events if str(e.metadata.get("message_id")) in published]
    fleet.assert_no_crash()
    record(
        {
            "fuzzed": len(published) + len(refused),
            "refused_at_publish": len(refused),
            "dead_lettered": len(must_die & set(seen)),
            "valid_by_chance": len(valid),
            "reasons": sorted({seen[m] for m in must_die if m in seen}),
            "history_traces": len(traces),
            "max_valid_delay_s": round(max(delays.values(), default=-1), 3),
        }
    )
    assert len(published) + len(refused) >= EXAMPLES
    assert must_die <= set(seen), sorted(must_die - set(seen))[:5]
    assert {seen[m] for m in must_die} <= REASONS
    assert all("no queue is bound" in why for why in refused.values())
    assert traces == [] or valid  # only a valid message may have an effect
    assert len(delays) == len(sent) >= EXAMPLES // 40
    assert max(delays.values()) <= MAX_DELAY_S


def _decodes(body: bytes) -> bool:
    try:
        decode(body)
    except ContractError:
        return False
    return True
