"""The sizes the task manager checks equal the bytes of the whole envelope, built and encoded.

``workers/tasks/sizes.py`` adds a value's own encoding to a frame encoded once per
shape; these build every message whole, as the relay would send it, and compare.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from pydantic import JsonValue

from contracts import AssignTask, SubmitTask, TaskOutcome
from workers.tasks.sizes import (
    _LARGEST_TOKEN,
    _SOME_ID,
    ASSIGNER,
    NOTIFIER,
    assignment_bytes,
    envelope_bytes,
    outcome_bytes,
)

VALUES: list[JsonValue] = [
    None,
    True,
    0,
    -7,
    2**70,
    -(2**64) - 1,
    0.1,
    1e15,
    1e16,
    -1e-7,
    1.5e300,
    123456789.123456789,
    "",
    "plain",
    'quote " backslash \\ slash / tab \t newline \n bell \x07',
    "unicode é 漢字 🚀 \u2028 \u2029 \x7f",
    [],
    {},
    [1e15] * 50,
    {"nested": {"list": [1, 2.5, "x", None, False, {"deep": ["é"]}]}, "k": -0.0},
    {"": 1, "key with spaces": [[], {}], "😀": "😀"},
    float("inf"),
    [float("-inf"), float("nan")],
]


def whole_assignment(cmd: SubmitTask) -> int:
    notice = AssignTask(
        task_id=cmd.task_id,
        capability=cmd.capability,
        payload=cmd.payload,
        attempt=cmd.max_attempts,
        fencing_token=_LARGEST_TOKEN,
        timeout_s=cmd.timeout_s,
        leases=tuple(_SOME_ID for _ in cmd.resources),
    )
    return envelope_bytes(notice, ASSIGNER)


def whole_outcome(task_id: UUID, attempt: int, result: JsonValue) -> int:
    notice = TaskOutcome(task_id=task_id, state="succeeded", attempt=attempt, result=result)
    return envelope_bytes(notice, NOTIFIER)


@pytest.mark.parametrize("payload", VALUES)
def test_assignment_bytes_equal_the_whole_assign_task(payload: JsonValue) -> None:
    cmd = SubmitTask(capability="crawl", payload=payload)
    assert assignment_bytes(cmd) == whole_assignment(cmd)


@pytest.mark.parametrize(
    "fields",
    [
        {"capability": "c", "timeout_s": 300},
        {"capability": "c", "timeout_s": 300.0},
        {"capability": "c", "timeout_s": 0.001},
        {"capability": "c", "timeout_s": 12345.678},
        {"capability": "capability.with-long_name" * 4, "max_attempts": 100},
        {"capability": "c", "max_attempts": 1},
        {"capability": "c", "resources": ["gpu"]},
        {"capability": "c", "resources": [f"r{i}" for i in range(3)]},
    ],
)
def test_assignment_bytes_follow_every_field_of_the_shape(fields: dict[str, object]) -> None:
    for payload in ("x" * 100, {"a": [1e15, "é"]}):
        cmd = SubmitTask.model_validate({**fields, "payload": payload})
        assert assignment_bytes(cmd) == whole_assignment(cmd)


def test_a_payload_read_from_the_wire_is_sized_as_re_encoded() -> None:
    payload = '[1e15,1E400,0.10,"\\u00e9",12345678901234567890]'
    raw = f'{{"capability":"c","timeout_s":5,"payload":{payload}}}'
    cmd = SubmitTask.model_validate_json(raw)
    assert assignment_bytes(cmd) == whole_assignment(cmd)


@pytest.mark.parametrize("result", VALUES)
@pytest.mark.parametrize("attempt", [1, 9, 10, 1000])
def test_outcome_bytes_equal_the_whole_task_outcome(result: JsonValue, attempt: int) -> None:
    task_id = uuid4()
    assert outcome_bytes(task_id, attempt, result) == whole_outcome(task_id, attempt, result)
