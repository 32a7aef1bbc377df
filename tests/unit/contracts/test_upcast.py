"""Contract evolution: TaskSubmitted v2 and its upcaster, what is written, unknown fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

import contracts as c
from contracts.schema import message_schema
from contracts.versions import NewerVersion, for_writing, set_write_versions

SENT = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _write_versions_from_code() -> Iterator[None]:
    set_write_versions({})  # the code's defaults, whatever RALLY_WRITE_VERSIONS says
    yield
    set_write_versions(None)


def v1_submitted(**fields: Any) -> dict[str, Any]:
    """A TaskSubmitted payload as a release before submit times recorded it."""
    return {"task_id": str(uuid4()), "capability": "crawl", "ready": True, **fields}


def wire(type_name: str, version: int, payload: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": str(uuid4()),
            "type": type_name,
            "version": version,
            "correlation_id": str(uuid4()),
            "sender": "tasks",
            "sent_at": SENT.isoformat(),
            "payload": payload,
        }
    ).encode()


def test_a_v1_task_submitted_on_the_wire_is_upcast_with_its_send_time() -> None:
    env = c.decode(wire("TaskSubmitted", 1, v1_submitted(submitted_by="client-7")))
    assert env.version == 2
    assert isinstance(env.payload, c.TaskSubmitted)
    assert env.payload.submitted_at == SENT
    # recorded before owners: the outcome went to the sender's name
    assert env.payload.reply_to == "client-7"
    assert env.payload.pending_timeout_s == 365 * 24 * 3600


def test_a_v1_task_submitted_with_a_submit_time_keeps_it_and_its_reply_address() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    payload = v1_submitted(submitted_at=at.isoformat(), reply_to=None, owner="alice")
    event = c.decode_payload("TaskSubmitted", 1, payload, recorded_at=SENT)
    assert isinstance(event, c.TaskSubmitted)
    assert (event.submitted_at, event.reply_to, event.owner) == (at, None, "alice")


def test_a_v1_task_submitted_with_no_time_anywhere_is_invalid_not_guessed() -> None:
    with pytest.raises(c.InvalidMessage, match="submitted_at"):
        c.decode_payload("TaskSubmitted", 1, v1_submitted())


def test_a_v2_task_submitted_must_carry_its_submit_time() -> None:
    with pytest.raises(c.InvalidMessage, match=r"payload\.submitted_at"):
        c.decode(wire("TaskSubmitted", 2, v1_submitted()))


def test_this_release_writes_v1_until_told_the_fleet_reads_v2() -> None:
    event = c.TaskSubmitted(task_id=uuid4(), capability="x", ready=True, submitted_at=SENT)
    assert for_writing(event)[0] == 1
    body = json.loads(c.encode(c.Envelope.wrap(event, sender="tasks")))
    assert body["version"] == 1
    assert c.decode(json.dumps(body).encode()).payload == event  # and reads back whole
    set_write_versions("TaskSubmitted=2")
    assert for_writing(event) == (2, event.model_dump(mode="json"))
    set_write_versions("latest")
    assert json.loads(c.encode(c.Envelope.wrap(event, sender="tasks")))["version"] == 2


def test_write_versions_must_name_known_types() -> None:
    with pytest.raises(ValueError, match="TaskSubmited"):
        set_write_versions("TaskSubmited=2")


def test_a_version_one_ahead_is_from_the_next_release_and_two_ahead_is_not() -> None:
    payload = {"agent_id": "a1", "capabilities": ["x"], "capacity": 1}
    with pytest.raises(NewerVersion) as one:
        c.decode(wire("RegisterAgent", 2, payload))
    assert one.value.next_release
    assert one.value.reason == "unknown_version"
    with pytest.raises(NewerVersion) as two:
        c.decode(wire("RegisterAgent", 3, payload))
    assert not two.value.next_release


def test_events_and_notices_ignore_unknown_fields_and_commands_refuse_them() -> None:
    event = c.decode(wire("TaskReady", 1, {"task_id": str(uuid4()), "added_later": 1}))
    assert isinstance(event.payload, c.TaskReady)
    assert "added_later" not in event.payload.model_dump()
    notice = {"task_id": str(uuid4()), "attempt": 1, "reason": "r", "hint": "new"}
    assert isinstance(c.decode(wire("StopTask", 1, notice)).payload, c.StopTask)
    with pytest.raises(c.InvalidMessage, match=r"payload\.max_attempt"):
        c.decode(wire("SubmitTask", 1, {"capability": "x", "max_attempt": 5}))


def test_the_json_schema_says_which_messages_take_unknown_fields() -> None:
    def payload_schema(cls: type[c.Message]) -> dict[str, Any]:
        schema = message_schema(cls)
        ref = schema["properties"]["payload"]["$ref"].rsplit("/", 1)[-1]
        found: dict[str, Any] = schema["$defs"][ref]
        return found

    assert payload_schema(c.SubmitTask).get("additionalProperties") is False
    assert "additionalProperties" not in payload_schema(c.TaskSubmitted)
    assert "additionalProperties" not in payload_schema(c.AssignTask)
    submitted = message_schema(c.TaskSubmitted)
    assert submitted["properties"]["version"]["const"] == 2
    assert "submitted_at" in payload_schema(c.TaskSubmitted)["required"]
