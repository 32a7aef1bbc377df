"""How big the messages a task causes will be, measured on the bytes that would be sent.

A check on the raw input is not enough: a payload is re-encoded on its way
(``1e15`` arrives as 4 bytes and leaves as ``1000000000000000.0``), so each
size here is the length of the envelope encoded exactly as the relay sends it,
with the longest values its variable fields can take.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from uuid import UUID

from pydantic import JsonValue

from contracts import AssignTask, Envelope, Message, SubmitTask, TaskOutcome, encode

ASSIGNER = "allocator"  # the worker that sends AssignTask (workers/allocator)
NOTIFIER = "tasks"  # the worker that sends TaskOutcome
# the largest fencing token a task reaches in practice (it is the task stream's version)
_LARGEST_TOKEN = 10**9
_SOME_ID = UUID(int=(1 << 128) - 1)
_LONGEST_TIME = datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def envelope_bytes(payload: Message, sender: str) -> int:
    """The encoded size of ``payload`` in an envelope with every lineage field set."""
    envelope = Envelope.wrap(payload, sender=sender, correlation_id=_SOME_ID, message_id=_SOME_ID)
    envelope = envelope.model_copy(update={"causation_id": _SOME_ID, "sent_at": _LONGEST_TIME})
    return len(encode(envelope, max_bytes=sys.maxsize))


def assignment_bytes(cmd: SubmitTask) -> int:
    """The size of the AssignTask that would run this task (its last attempt, every lease)."""
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


def outcome_bytes(task_id: UUID, attempt: int, result: JsonValue) -> int:
    """The size of the TaskOutcome that would tell the submitter this result."""
    notice = TaskOutcome(task_id=task_id, state="succeeded", attempt=attempt, result=result)
    return envelope_bytes(notice, NOTIFIER)
