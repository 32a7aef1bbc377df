"""Records whose parts are parsed on first use equal the records built whole.

A read's metadata (``RecordedEvent.stored``) and an append's recorded events
(``AppendResult.recorded``) are left unparsed until someone asks: most callers
never do. The stores' contract tests compare them with reads on both adapters.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from workers.store.base import AppendResult, RecordedEvent
from workers.store.errors import StoreError

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ID = uuid4()
META = '{"message_id":"m-1","worker":"tasks","traceparent":null}'


def stored(metadata: str = META) -> RecordedEvent:
    return RecordedEvent.stored(7, "task-1", 2, ID, "TaskStarted", 1, {"a": [1]}, metadata, AT)


def whole() -> RecordedEvent:
    meta = {"message_id": "m-1", "worker": "tasks", "traceparent": None}
    return RecordedEvent(7, "task-1", 2, ID, "TaskStarted", 1, {"a": [1]}, meta, AT)


def test_a_stored_record_equals_the_record_built_whole() -> None:
    record = stored()
    assert record == whole()
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
