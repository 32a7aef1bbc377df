"""The codec: bytes in, a validated model out, or an error that says exactly what is wrong."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

import contracts as c
from contracts.schema import all_schemas, protocol_schema


def envelope_json(**payload: Any) -> dict[str, Any]:
    env = c.Envelope.wrap(
        c.RegisterAgent(agent_id="a1", capabilities=("x",), capacity=1), sender="t"
    )
    data: dict[str, Any] = json.loads(c.encode(env))
    data["payload"].update(payload)
    return data


def test_round_trip_keeps_every_field() -> None:
    sub = c.SubmitTask(capability="crawl", payload={"url": "u"}, priority=5, depends_on=())
    env = c.Envelope.wrap(sub, sender="client-1")
    back = c.decode(c.encode(env))
    assert back == env
    assert isinstance(back.payload, c.SubmitTask)
    assert back.payload.payload == {"url": "u"}


def test_lineage_follows_the_cause() -> None:
    first = c.Envelope.wrap(c.CancelTask(task_id=c.SubmitTask(capability="x").task_id), sender="a")
    second = c.Envelope.wrap(c.AgentLeft(agent_id="a"), sender="b", caused_by=first)
    assert second.correlation_id == first.correlation_id
    assert second.causation_id == first.id


@pytest.mark.parametrize(
    ("raw", "error", "words"),
    [
        (b"{not json", c.MalformedMessage, "not valid JSON"),
        (b"[1, 2]", c.MalformedMessage, "not an object"),
        (b'{"type": "Nope", "version": 1}', c.UnknownMessageType, "'Nope'"),
        (b'{"version": 1}', c.InvalidMessage, "'type'"),
    ],
)
def test_bad_bytes_name_their_problem(raw: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        c.decode(raw)


def test_invalid_field_is_named() -> None:
    raw = json.dumps(envelope_json(capacity=0)).encode()
    with pytest.raises(c.InvalidMessage) as info:
        c.decode(raw)
    assert info.value.errors[0]["loc"] == "payload.capacity"
    assert "greater than or equal to 1" in info.value.errors[0]["msg"]
    assert info.value.reason == "invalid"


def test_unknown_field_is_refused() -> None:
    raw = json.dumps(envelope_json(colour="blue")).encode()
    with pytest.raises(c.InvalidMessage, match=r"payload\.colour"):
        c.decode(raw)


def test_newer_version_is_refused_and_older_is_upcast() -> None:
    data = envelope_json()
    data["version"] = 2
    with pytest.raises(c.UnsupportedVersion):
        c.decode(json.dumps(data).encode())

    class Ping(c.Command):
        route = "test"
        version = 2
        seq: int
        source: str

    @c.upcaster("Ping", from_version=1)
    def _v1(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "source": "unknown"}

    old = {
        "id": data["id"],
        "type": "Ping",
        "version": 1,
        "sent_at": data["sent_at"],
        "correlation_id": data["correlation_id"],
        "sender": "s",
        "payload": {"seq": 3},
    }
    msg = c.decode(json.dumps(old).encode())
    assert msg.payload == Ping(seq=3, source="unknown")
    assert msg.version == 2


def test_size_limit_applies_before_publish_and_on_receipt() -> None:
    big = c.Envelope.wrap(c.SubmitTask(capability="x", payload="a" * 2000), sender="s")
    with pytest.raises(c.MessageTooLarge):
        c.encode(big, max_bytes=1024)
    with pytest.raises(c.MessageTooLarge):
        c.decode(b" " * 2048, max_bytes=1024)


def test_models_are_frozen() -> None:
    msg = c.Heartbeat(agent_id="a", load=1)
    with pytest.raises(Exception, match="frozen"):
        msg.load = 2  # type: ignore[misc]


def test_every_message_has_a_valid_json_schema_that_accepts_it() -> None:
    schemas = all_schemas()
    assert "SubmitTask" in schemas
    assert "TaskSucceeded" in schemas
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    protocol = protocol_schema()
    jsonschema.Draft202012Validator.check_schema(protocol)
    env = c.Envelope.wrap(c.SubmitTask(capability="x", depends_on=()), sender="s")
    jsonschema.validate(json.loads(c.encode(env)), protocol)
    bad = json.loads(c.encode(env))
    bad["payload"]["priority"] = "high"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, protocol)


@pytest.mark.parametrize("field", ["id", "sent_at"])
def test_an_envelope_without_id_or_sent_at_is_invalid_never_given_one(field: str) -> None:
    data = envelope_json()
    del data[field]
    with pytest.raises(c.InvalidMessage) as caught:
        c.decode(json.dumps(data).encode())
    assert caught.value.reason == "invalid"
    assert any(e["loc"] == field for e in caught.value.errors)
