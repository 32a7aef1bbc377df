"""The upcasters and downcasters of every contract that has more than one version.

One pair per breaking change, named after the versions they join, with why the change
was made. Imported by contracts.registry, so decoding anything registers them first.
"""

from __future__ import annotations

from typing import Any

from contracts.errors import InvalidMessage
from contracts.versions import Origin, downcaster, upcaster

LEGACY_PENDING_TIMEOUT_S = 365 * 24 * 3600.0  # SubmitTask's largest: "never", in effect

# ---- TaskSubmitted 1 → 2: ``submitted_at`` is required ----
#
# Version 1 made it optional because tasks recorded before owners had none, so every
# reader of a task (the pending time-out, the reply rule, the read models' "submitted"
# column) carried a "None: recorded before" branch. Version 2 reads it from the record
# instead: the event was recorded at submit, so the record's time is the submit time.


@upcaster("TaskSubmitted", from_version=1)
def _task_submitted_v1_to_v2(payload: dict[str, Any], origin: Origin) -> dict[str, Any]:
    if payload.get("submitted_at") is not None:
        return payload
    if origin.at is None:
        raise InvalidMessage(
            "TaskSubmitted version 1 without submitted_at needs the time it was recorded",
            [{"loc": "payload.submitted_at", "msg": "no record time to take it from"}],
        )
    # recorded before owners: the outcome went where the sender said, or to the sender's
    # name; and before pending time-outs, which nobody asked of it (the longest there is)
    lifted = {**payload, "submitted_at": origin.at.isoformat()}
    lifted["reply_to"] = payload.get("reply_to") or payload.get("submitted_by", "unknown")
    lifted.setdefault("pending_timeout_s", LEGACY_PENDING_TIMEOUT_S)
    return lifted


@downcaster("TaskSubmitted", from_version=2)
def _task_submitted_v2_to_v1(payload: dict[str, Any]) -> dict[str, Any]:
    # the same fields, one of them now required: every v2 payload is a valid v1 payload
    return payload
