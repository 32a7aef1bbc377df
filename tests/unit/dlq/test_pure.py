"""Parse, explain and plan: pure functions, no broker, no store."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

import contracts as c
from broker import headers as h
from broker.topology import Topology
from tests.support.dead_letters import T0, make_letter
from workers.dlq.explain import explain
from workers.dlq.model import DeadLetter
from workers.dlq.parse import REPLAY_OF, RawDeadLetter, jsonable, parse
from workers.dlq.replay_plan import plan, replay_headers
from workers.dlq.views import parse_since

NOW = datetime(2030, 6, 1, tzinfo=UTC)
TOPOLOGY = Topology("rally")


def _parse(headers: dict[str, object], **props: object) -> DeadLetter:
    raw = RawDeadLetter(
        dlq="rally.q.tasks.dlq",
        body=b'{"type": "SubmitTask"}',
        headers=headers,
        properties={"message_id": "m1", **props},
        exchange="rally.dlx",
        routing_key="rally.q.tasks",
    )
    return parse(raw, now=NOW, delivery_limit=10)


def test_our_headers_win_over_the_delay_queues_x_death() -> None:
    """A message retried through a delay queue carries x-death (expired) entries; the
    consumer's reason is the one that counts, and its origin is recovered."""
    letter = _parse(
        {
            h.DL_REASON: "handler_error",
            h.DL_ERROR: "ValueError: boom",
            h.DL_ERROR_TYPE: "ValueError",
            h.DL_ATTEMPTS: 5,
            h.DL_QUEUE: "rally.q.tasks",
            h.DL_EXCHANGE: "rally.requeue",
            h.DL_ROUTING_KEY: "t100ms.rally.q.tasks",
            h.DL_FIRST_DEATH: "2030-05-01T10:00:00+00:00",
            h.DL_LAST_DEATH: "2030-05-01T10:00:01.5+00:00",
            h.DL_WORKER: "tasks",
            h.DL_REPLICA: "r2",
            h.DL_TYPE: "SubmitTask",
            "x-death": [{"reason": "expired", "queue": "rally.delay.t100ms", "count": 4}],
        }
    )
    assert (letter.reason, letter.dead_lettered_by, letter.attempts) == (
        "handler_error",
        "rallypoint",
        5,
    )
    assert (letter.exchange, letter.routing_key) == ("rally.commands", "tasks.SubmitTask")
    assert letter.last_death_at == datetime(2030, 5, 1, 10, 0, 1, 500000, tzinfo=UTC)
    assert (letter.worker, letter.replica) == ("tasks", "r2")
    assert explain(letter).summary == "the handler raised ValueError 5 times: boom"


def test_rabbitmqs_own_dead_letters() -> None:
    died = datetime(2030, 5, 1, 10, 0, tzinfo=UTC)
    letter = _parse(
        {
            "x-death": [
                {"reason": "expired", "queue": "rally.delay.t100ms", "time": died},
                {
                    "reason": "delivery_limit",
                    "queue": "rally.q.tasks",
                    "time": died,
                    "exchange": "rally.commands",
                    "routing-keys": ["tasks.SubmitTask"],
                    "count": 1,
                },
            ]
        },
        type="SubmitTask",
    )
    assert (letter.reason, letter.dead_lettered_by) == ("delivery_limit", "rabbitmq")
    assert letter.attempts == 11  # a quorum queue gives up on the delivery after the limit
    assert (letter.exchange, letter.routing_key) == ("rally.commands", "tasks.SubmitTask")
    assert letter.headers["x-death"][1]["time"] == died.isoformat()
    nacked = _parse({"x-death": [{"reason": "rejected", "queue": "rally.q.tasks"}]})
    assert nacked.reason == "nacked"
    assert "rejected it without requeue" in explain(nacked).summary


def test_the_same_death_parses_to_the_same_id_whenever_it_is_read() -> None:
    headers = {h.DL_REASON: "invalid", h.DL_LAST_DEATH: "2030-05-01T10:00:00+00:00"}
    raw = RawDeadLetter("rally.q.tasks.dlq", b"{}", headers, {"message_id": "m1"})
    first = parse(raw, now=NOW, delivery_limit=10)
    again = parse(raw, now=NOW + timedelta(hours=1), delivery_limit=10)
    assert first.id == again.id
    other = RawDeadLetter("rally.q.tasks.dlq", b"{}", headers, {"message_id": "m2"})
    assert parse(other, now=NOW, delivery_limit=10).id != first.id


def test_a_letter_with_no_reason_is_still_kept() -> None:
    letter = _parse({})
    assert letter.reason == "unknown"
    assert letter.message_type == "SubmitTask"  # read from the body
    assert "no reason in its headers" in explain(letter).summary


def test_header_values_become_json() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    value = {"t": when, "b": b"text", "x": b"\xff", "d": Decimal("1.5"), "l": (1, [2])}
    assert jsonable(value) == {
        "t": "2030-01-01T00:00:00+00:00",
        "b": "text",
        "x": {"$base64": "/w=="},
        "d": "1.5",
        "l": [1, [2]],
    }
    json.dumps(jsonable(value))


# every reason the consumer runtime (contracts + broker/errors) and RabbitMQ can give
KNOWN_REASONS = (
    *(e.reason for e in (c.MalformedMessage, c.InvalidMessage, c.UnknownMessageType)),
    *(e.reason for e in (c.UnsupportedVersion, c.MessageTooLarge)),
    "handler_error",
    "retries_exhausted",
    "rejected",
    "security",
    "delivery_limit",
    "expired",
    "nacked",
    "maxlen",
)


@pytest.mark.parametrize("reason", KNOWN_REASONS)
def test_every_reason_has_its_own_explanation(reason: str) -> None:
    text = explain(make_letter(1, reason=reason, error="the error text"))
    assert not text.summary.startswith("dead-lettered for reason")  # not the fallback
    assert text.hint


def test_invalid_names_each_field() -> None:
    text = explain(make_letter(0))  # n=0 is an invalid one with a field error
    assert text.details == ("field payload.capacity: must be >= 1",)
    assert "payload.capacity" in text.summary


def test_plan_validates_and_aims_at_the_queue() -> None:
    good = c.Envelope.wrap(c.SubmitTask(capability="crawl"), sender="s").model_dump_json()
    letter = make_letter(1, body=good.encode())
    p = plan(letter, TOPOLOGY, max_bytes=10_000)
    assert p.refusal is None
    assert (p.exchange, p.routing_key) == ("rally.requeue", "replay.rally.q.tasks")
    assert p.message_type == "SubmitTask"
    bad = plan(letter, TOPOLOGY, edited_body=b'{"type": "SubmitTask"}', max_bytes=10_000)
    assert bad.refusal is not None
    assert bad.refusal[0] == "invalid"
    assert bad.edited
    nowhere = plan(replace(letter, exchange=None), TOPOLOGY, max_bytes=10_000, to_origin=True)
    assert nowhere.refusal is not None
    assert nowhere.refusal[0] == "no_origin"


def test_replay_headers_forget_the_death_and_keep_the_origin() -> None:
    letter = make_letter(
        1,
        headers={
            h.DL_REASON: "handler_error",
            h.DL_ATTEMPTS: 3,
            h.ATTEMPT: 3,
            h.DL_EXCHANGE: "rally.commands",
            h.DL_FIRST_DEATH: "2030-01-01T00:00:00+00:00",
            "x-death": [],
            "x-rally-original-user-id": "agent-7",
            "traceparent": "00-abc-def-01",
        },
    )
    out = replay_headers(letter, "r1", "ops")
    assert out == {
        h.DL_EXCHANGE: "rally.commands",
        h.DL_FIRST_DEATH: "2030-01-01T00:00:00+00:00",
        "x-rally-original-user-id": "agent-7",
        "traceparent": "00-abc-def-01",
        REPLAY_OF: letter.id,
        "x-rally-replay-id": "r1",
        "x-rally-replayed-by": "ops",
    }


def test_since_takes_durations_and_times() -> None:
    assert parse_since("90m", T0) == T0 - timedelta(minutes=90)
    assert parse_since("2d", T0) == T0 - timedelta(days=2)
    assert parse_since("2030-01-01T10:00:00", T0) == datetime(2030, 1, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday", T0)
