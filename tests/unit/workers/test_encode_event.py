"""An event goes out as the envelope its model would make, without validating it again."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from contracts import TaskSucceeded, decode
from contracts.headers import POSITION, STREAM, VERSION
from workers.runtime.messages import new_event
from workers.runtime.outbox import encode_event
from workers.store import RecordedEvent


def recorded(metadata: dict[str, object]) -> tuple[RecordedEvent, TaskSucceeded]:
    event = TaskSucceeded(task_id=uuid4(), agent_id="a-1", attempt=2, result={"ü": [1, 2.5]})
    new = new_event(event)
    record = RecordedEvent(
        position=41,
        stream=f"task-{event.task_id}",
        version=5,
        id=new.id,
        type=new.type,
        schema_version=new.schema_version,
        data=dict(new.data),
        metadata=metadata,
        recorded_at=datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )
    return record, event


def test_the_envelope_decodes_to_the_event_with_its_lineage() -> None:
    correlation, cause = uuid4(), uuid4()
    record, event = recorded(
        {"correlation_id": str(correlation), "message_id": str(cause), "worker": "tasks"}
    )
    out = encode_event(record)
    envelope = decode(out.body)
    assert envelope.payload == event
    assert envelope.id == record.id
    assert (envelope.type, envelope.version) == ("TaskSucceeded", 1)
    assert envelope.correlation_id == correlation
    assert envelope.causation_id == cause
    assert envelope.sender == "tasks"
    assert envelope.sent_at == record.recorded_at
    assert (out.exchange, out.routing_key) == ("events", "task.TaskSucceeded")
    assert out.message_id == str(record.id)
    assert out.headers[POSITION] == "41"
    assert out.headers[STREAM] == record.stream
    assert out.headers[VERSION] == "5"


def test_without_lineage_the_event_is_its_own_correlation() -> None:
    record, _ = recorded({})
    envelope = decode(encode_event(record).body)
    assert envelope.correlation_id == record.id
    assert envelope.causation_id is None
    assert envelope.sender == "rally"
