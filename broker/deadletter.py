"""What a dead letter carries: the original message whole, and why it died, in headers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from broker import headers as h
from contracts.headers import ORIGINAL_USER_ID as ORIGINAL_USER_ID


def dead_letter_headers(
    original: Mapping[str, Any],
    *,
    reason: str,
    error: str,
    error_type: str | None,
    errors: list[dict[str, str]] | None,
    queue: str,
    exchange: str,
    routing_key: str,
    attempts: int,
    worker: str,
    replica: str,
    message_type: str | None,
    original_user_id: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    stamped = now.isoformat()
    out: dict[str, Any] = {k: v for k, v in original.items() if k != h.ATTEMPT}
    out.update(
        {
            h.DL_REASON: reason,
            h.DL_ERROR: error[:4000],
            h.DL_QUEUE: queue,
            h.DL_EXCHANGE: exchange,
            h.DL_ROUTING_KEY: routing_key,
            h.DL_ATTEMPTS: attempts,
            h.DL_FIRST_DEATH: str(original.get(h.DL_FIRST_DEATH, stamped)),
            h.DL_LAST_DEATH: stamped,
            h.DL_WORKER: worker,
            h.DL_REPLICA: replica,
        }
    )
    if error_type:
        out[h.DL_ERROR_TYPE] = error_type
    if errors:
        out[h.DL_ERRORS] = json.dumps(errors)[:4000]
    if message_type:
        out[h.DL_TYPE] = message_type
    if original_user_id:
        out[ORIGINAL_USER_ID] = original_user_id
    return out
