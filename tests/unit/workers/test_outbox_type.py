"""The relay sets the AMQP ``type`` of every outbox message, notices included."""

from __future__ import annotations

from uuid import uuid4

from contracts import TaskAccepted
from workers.runtime.messages import MESSAGE_TYPE, Effect, outbox_message
from workers.runtime.outbox import _type_of
from workers.store.base import OutgoingRecord


def _record(exchange: str, key: str, headers: dict[str, str]) -> OutgoingRecord:
    return OutgoingRecord(exchange, key, b"{}", "m-1", headers)


def test_a_notice_to_an_inbox_keeps_its_type_although_its_key_is_the_recipient() -> None:
    row = outbox_message(Effect(TaskAccepted(task_id=uuid4()), to="agent-7"), sender="tasks")
    assert row.routing_key == "agent-7"
    assert row.headers[MESSAGE_TYPE] == "TaskAccepted"
    assert _type_of(_record(row.exchange, row.routing_key, dict(row.headers))) == "TaskAccepted"


def test_rows_from_before_the_header_fall_back_to_the_routing_key() -> None:
    assert _type_of(_record("events", "task.TaskSubmitted", {})) == "TaskSubmitted"
    assert _type_of(_record("inbox", "agent-7", {})) is None
