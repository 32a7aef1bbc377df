"""Dead letters built by hand, for the archive contract and the pure tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.dlq.model import DeadLetter, FieldError, letter_id, message_key

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def make_letter(n: int = 0, **overrides: Any) -> DeadLetter:
    """The n-th of a series: one second apart, alternating reasons and types."""
    dlq = overrides.pop("dlq", "rally.q.tasks.dlq")
    mid = overrides.pop("message_id", f"00000000-0000-0000-0000-{n:012d}")
    body = overrides.pop("body", b'{"type": "SubmitTask", "n": %d}' % n)
    last = overrides.pop("last_death_at", T0 + timedelta(seconds=n))
    key = message_key(mid, body)
    letter = DeadLetter(
        id=letter_id(dlq, key, last),
        dlq=dlq,
        queue=dlq.removesuffix(".dlq"),
        message_key=key,
        message_id=mid,
        message_type="SubmitTask" if n % 2 == 0 else "CancelTask",
        reason="handler_error" if n % 3 else "invalid",
        dead_lettered_by="rallypoint",
        error="ValueError: boom",
        error_type="ValueError",
        field_errors=(FieldError("payload.capacity", "must be >= 1"),) if n % 3 == 0 else (),
        exchange="rally.commands",
        routing_key="tasks.SubmitTask",
        attempts=3,
        first_death_at=last - timedelta(seconds=1),
        last_death_at=last,
        worker="tasks",
        replica="r1",
        correlation_id="c-1",
        user_id="guest",
        body=body,
        headers={"x-rally-reason": "handler_error", "nested": {"a": [1, "b"]}},
        properties={"message_id": mid, "type": "SubmitTask", "delivery_mode": 2},
        archived_at=last + timedelta(seconds=5),
    )
    return replace(letter, **overrides)
