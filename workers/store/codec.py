"""JSON and time conversions shared by the adapters, so both write the same bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from workers.store.base import AppendResult, Metadata
from workers.store.errors import StoreError

# What json.dumps(value, **these options) builds on every call; one is enough (it keeps
# no state between calls), and an append encodes each event's data and metadata.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Mapping[str, Any], what: str) -> str:
    """Compact JSON. NaN is refused: PostgreSQL's jsonb would refuse it later anyway."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} is not JSON-serialisable: {exc}") from exc


def loads(text: str | bytes) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise StoreError(f"expected a JSON object in the store, found {type(value).__name__}")
    return value


def metadata_dict(metadata: Metadata) -> dict[str, str | None]:
    # Every key is always present so readers (and `rally events dump`) see one shape.
    return {
        "message_id": metadata.message_id,
        "causation_id": metadata.causation_id,
        "correlation_id": metadata.correlation_id,
        "sender": metadata.sender,
        "worker": metadata.worker,
        "replica": metadata.replica,
        "traceparent": metadata.traceparent,
    }


def result_to_json(result: AppendResult) -> str:
    return json.dumps({"positions": list(result.positions), "versions": result.versions})


def result_from_json(text: str) -> AppendResult:
    return result_from_dict(json.loads(text))


def result_from_dict(raw: Mapping[str, Any]) -> AppendResult:
    """A stored result comes back marked duplicate: that is why it is being read."""
    return AppendResult(
        positions=tuple(int(p) for p in raw["positions"]),
        versions={str(k): int(v) for k, v in raw["versions"].items()},
        duplicate=True,
    )


def utc(moment: datetime) -> datetime:
    """Refuse naive datetimes: a timer's zone must never be guessed."""
    if moment.tzinfo is None:
        raise StoreError("naive datetime: pass a timezone-aware time (UTC)")
    return moment.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)
