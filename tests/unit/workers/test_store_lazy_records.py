"""Records whose parts are parsed on first use equal the records built whole.

A read's data and metadata (``RecordedEvent.stored``) and an append's recorded
events (``AppendResult.recorded``) are left unparsed until someone asks: most
callers never read the metadata, and ``load_event`` validates current-version data
from its text. The stores' contract tests compare them with reads on both adapters.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from contracts import (
    DependentAdded,
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskFailed,
    TaskKeyClaimed,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
)
from contracts.errors import InvalidMessage
from workers.runtime.messages import load_event, new_event
from workers.store.base import AppendResult, RecordedEvent
from workers.store.errors import StoreError

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ID = uuid4()
META = '{"message_id":"m-1","worker":"tasks","traceparent":null}'
DATA = '{"a":[1]}'


def stored(metadata: str = META, data: str = DATA) -> RecordedEvent:
    return RecordedEvent.stored(7, "task-1", 2, ID, "TaskStarted", 1, data, metadata, AT)


def whole() -> RecordedEvent:
    meta = {"message_id": "m-1", "worker": "tasks", "traceparent": None}
    return RecordedEvent(7, "task-1", 2, ID, "TaskStarted", 1, {"a": [1]}, meta, AT)


def test_a_stored_record_equals_the_record_built_whole() -> None:
    record = stored()
    assert record.data_text() == DATA
    assert record == whole()
    assert record.data_text() is None  # parsed now: ``data`` is the one truth
    assert record.metadata == {"message_id": "m-1", "worker": "tasks", "traceparent": None}
    assert record.metadata is record.metadata  # parsed once, then kept
    assert repr(record) == repr(whole())
    assert dataclasses.replace(record, position=8) == dataclasses.replace(whole(), position=8)


def test_a_stored_record_parses_its_metadata_only_when_asked() -> None:
    record = stored("not json at all")
    assert record.data == {"a": [1]}  # everything else reads without the metadata
    assert (record.type, record.version, record.category) == ("TaskStarted", 2, "task")
    with pytest.raises(json.JSONDecodeError):
        _ = record.metadata


def test_stored_metadata_that_is_not_an_object_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        _ = stored("[1, 2]").metadata
    with pytest.raises(StoreError):
        _ = stored(data="7").data


def test_an_unknown_attribute_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = stored().nothing  # type: ignore[attr-defined]
    assert not hasattr(whole(), "nothing")


def test_a_recorded_result_builds_its_events_once_on_first_use() -> None:
    calls: list[int] = []

    def build() -> tuple[RecordedEvent, ...]:
        calls.append(1)
        return (whole(),)

    result = AppendResult.recorded((7,), {"task-1": 2}, build)
    assert calls == []
    assert (result.positions, result.versions, result.duplicate) == ((7,), {"task-1": 2}, False)
    assert calls == []  # nothing but the events builds them
    assert result.events == (whole(),)
    assert result.events[0] is result.events[0]
    assert calls == [1]
    assert result == AppendResult((7,), {"task-1": 2}, False, (whole(),))


def events_of_every_kind() -> list[Event]:
    task_id, agent = uuid4(), "agent-1"
    deadline = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    return [
        TaskAssigned(task_id=task_id, agent_id=agent, attempt=2, fencing_token=9, reason="r"),
        TaskStarted(task_id=task_id, agent_id=agent, attempt=2, deadline=deadline),
        TaskSucceeded(
            task_id=task_id, agent_id=agent, attempt=2, result={"x": [1.5, 1e16, "é", None]}
        ),
        TaskFailed(
            task_id=task_id,
            agent_id=agent,
            attempt=1,
            error="boom",
            error_type="E",
            retryable=True,
        ),
        TaskCancelled(task_id=task_id, reason="stop"),
        DependentAdded(task_id=task_id, dependent=uuid4()),
        TaskKeyClaimed(idempotency_key="k \u2028 é", task_id=task_id),
    ]


def as_stored(event: Event, position: int) -> RecordedEvent:
    new = new_event(event)
    text = json.dumps(new.data, separators=(",", ":"), ensure_ascii=False)
    return RecordedEvent.stored(
        position, "task-1", position, new.id, new.type, new.schema_version, text, META, AT
    )


@pytest.mark.parametrize("event", events_of_every_kind(), ids=lambda e: type(e).__name__)
def test_load_event_from_stored_text_equals_loading_the_parsed_data(event: Event) -> None:
    record = as_stored(event, 3)
    from_text = load_event(record)
    assert record.data_text() is not None  # decoded from its text, data still unparsed
    assert from_text == event
    assert load_event(as_stored(event, 3)) == from_text
    parsed = as_stored(event, 3)
    _ = parsed.data
    assert load_event(parsed) == from_text


def test_an_older_version_in_the_store_is_upcast_as_before() -> None:
    submitted = TaskSubmitted(
        capability="c",
        task_id=uuid4(),
        submitted_by="alice",
        ready=True,
        submitted_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    record = as_stored(submitted, 1)
    assert record.schema_version < TaskSubmitted.version  # written as v1 until the fleet reads v2
    assert load_event(record) == submitted  # upcast from the parsed data, as before


def test_a_stored_event_that_does_not_match_its_contract_is_a_contract_error() -> None:
    bad = RecordedEvent.stored(1, "task-1", 1, ID, "TaskStarted", 1, '{"a":1}', META, AT)
    with pytest.raises(InvalidMessage):
        load_event(bad)
    with pytest.raises(InvalidMessage):
        load_event(RecordedEvent.stored(1, "task-1", 1, ID, "TaskStarted", 1, "{", META, AT))
