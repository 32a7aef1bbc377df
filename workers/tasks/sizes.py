"""How big the messages a task causes will be, measured on the bytes that would be sent.

A check on the raw input is not enough: a payload is re-encoded on its way
(``1e15`` arrives as 4 bytes and leaves as ``1000000000000000.0``), so each
size here is the length of the envelope encoded exactly as the relay sends it,
with the longest values its variable fields can take.

Every submit and every result is checked, so the envelope is not built each time
(a profile of the task manager put a tenth of its handler time here): its size is
the size of the same envelope with the JSON value (payload or result) left ``null``
(the frame, encoded once per shape and kept), minus those 4 bytes, plus the value
encoded by the serializer that writes it into the envelope (pydantic's). A message
written in an older version (downcast on its way) is still built whole. The sizes
equal ``envelope_bytes`` of the whole message (tests/unit/workers/test_tasks_sizes.py).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from functools import lru_cache
from uuid import UUID

import pydantic_core
from pydantic import JsonValue

from contracts import AssignTask, Envelope, Message, SubmitTask, TaskOutcome, encode
from contracts.versions import written_version

ASSIGNER = "allocator"  # the worker that sends AssignTask (workers/allocator)
NOTIFIER = "tasks"  # the worker that sends TaskOutcome
# the largest fencing token a task reaches in practice (it is the task stream's version)
_LARGEST_TOKEN = 10**9
_SOME_ID = UUID(int=(1 << 128) - 1)
_LONGEST_TIME = datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
_NULL = len(b"null")
_FRAMES = 1024  # shapes kept: a fleet has a handful (capability, attempts, time-out)


def envelope_bytes(payload: Message, sender: str) -> int:
    """The encoded size of ``payload`` in an envelope with every lineage field set."""
    envelope = Envelope.wrap(payload, sender=sender, correlation_id=_SOME_ID, message_id=_SOME_ID)
    envelope = envelope.model_copy(update={"causation_id": _SOME_ID, "sent_at": _LONGEST_TIME})
    return len(encode(envelope, max_bytes=sys.maxsize))


def assignment_bytes(cmd: SubmitTask) -> int:
    """The size of the AssignTask that would run this task (its last attempt, every lease)."""
    if written_version(AssignTask) != AssignTask.version:  # downcast on its way: build it
        return envelope_bytes(_assignment(cmd, cmd.payload), ASSIGNER)
    # repr keys the cache too: 300 and 300.0 (or 0.0 and -0.0) are equal but written apart
    timeout = cmd.timeout_s
    frame = _assignment_frame(
        cmd.capability, cmd.max_attempts, timeout, repr(timeout), len(cmd.resources)
    )
    return frame - _NULL + _value_bytes(cmd.payload)


def outcome_bytes(task_id: UUID, attempt: int, result: JsonValue) -> int:
    """The size of the TaskOutcome that would tell the submitter this result."""
    if written_version(TaskOutcome) != TaskOutcome.version:
        return envelope_bytes(_outcome(task_id, attempt, result), NOTIFIER)
    # a task id is written as 36 characters whatever it is: one frame serves them all
    return _outcome_frame(attempt) - _NULL + _value_bytes(result)


def _value_bytes(value: JsonValue) -> int:
    """``value`` as a model's JSON writes it (pydantic's defaults: NaN and infinities as null)."""
    return len(pydantic_core.to_json(value, inf_nan_mode="null"))


def _assignment(cmd: SubmitTask, payload: JsonValue) -> AssignTask:
    return AssignTask(
        task_id=cmd.task_id,
        capability=cmd.capability,
        payload=payload,
        attempt=cmd.max_attempts,
        fencing_token=_LARGEST_TOKEN,
        timeout_s=cmd.timeout_s,
        leases=tuple(_SOME_ID for _ in cmd.resources),
    )


def _outcome(task_id: UUID, attempt: int, result: JsonValue) -> TaskOutcome:
    return TaskOutcome(task_id=task_id, state="succeeded", attempt=attempt, result=result)


@lru_cache(maxsize=_FRAMES)
def _assignment_frame(
    capability: str, attempts: int, timeout_s: float, _written_as: str, leases: int
) -> int:
    """The AssignTask's envelope with a null payload (``_written_as`` only keys the cache)."""
    notice = AssignTask(
        task_id=_SOME_ID,
        capability=capability,
        payload=None,
        attempt=attempts,
        fencing_token=_LARGEST_TOKEN,
        timeout_s=timeout_s,
        leases=(_SOME_ID,) * leases,
    )
    return envelope_bytes(notice, ASSIGNER)


@lru_cache(maxsize=_FRAMES)
def _outcome_frame(attempt: int) -> int:
    return envelope_bytes(_outcome(_SOME_ID, attempt, None), NOTIFIER)
