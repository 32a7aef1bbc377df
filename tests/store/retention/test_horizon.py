"""Processed-message ids: kept exactly as long as a duplicate can arrive, then forgotten."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.store.retention.fleet import NO_OUTBOX, Store
from tests.support.fixtures.store import StoreFactory
from workers.retention.job import run_once
from workers.retention.policy import RetentionSettings
from workers.store import Metadata, NewEvent
from workers.store.sqlite import SqliteEventStore

HORIZON = timedelta(days=1)


async def age_processed(store: Store, key: str, by: timedelta) -> None:
    """Make the key's processed row ``by`` old: time passing, without waiting for it."""
    if isinstance(store, SqliteEventStore):
        at = (datetime.now(UTC) - by).isoformat(timespec="microseconds")
        await store.write(
            lambda db: db.execute(
                "UPDATE processed_messages SET recorded_at = ? WHERE key = ?", (at, key)
            )
        )
        return
    async with store.connection() as conn:
        await conn.execute(
            "UPDATE processed_messages SET recorded_at = clock_timestamp() - $2::interval"
            " WHERE key = $1",
            key,
            by,
        )


async def processed_keys(store: Store) -> list[str]:
    if isinstance(store, SqliteEventStore):
        rows = await store.fetch("SELECT key FROM processed_messages")
        return [str(r[0]) for r in rows]
    async with store.connection() as conn:
        return [str(r[0]) for r in await conn.fetch("SELECT key FROM processed_messages")]


async def handle(store: Store, key: str) -> bool:
    """A message's effect, appended idempotently by its id; whether it applied."""
    result = await store.append(
        "agent-a1",
        None,
        [NewEvent("AgentHeartbeat", {"n": 1})],
        metadata=Metadata(message_id=key),
        idempotency_key=key,
    )
    return not result.duplicate


async def test_a_duplicate_inside_the_horizon_has_no_effect_and_its_id_goes_after_it(
    opened: StoreFactory, any_store_url: str, tmp_path: Path
) -> None:
    store = await opened(any_store_url, publishes=NO_OUTBOX)
    settings = RetentionSettings(None, HORIZON, tmp_path, timedelta(minutes=5))
    assert await handle(store, "m-1")

    await age_processed(store, "m-1", HORIZON - timedelta(minutes=1))  # just inside
    await run_once(store, settings, datetime.now(UTC))
    assert await processed_keys(store) == ["m-1"]
    assert not await handle(store, "m-1")  # the duplicate changes nothing
    assert await store.stream_version("agent-a1") == 1

    await age_processed(store, "m-1", HORIZON + timedelta(minutes=1))  # past the horizon
    report = await run_once(store, settings, datetime.now(UTC))
    assert report.processed_pruned == 1
    assert await processed_keys(store) == []
    assert await handle(store, "m-1")  # why the horizon must outlast every duplicate


def test_the_horizon_never_falls_below_what_the_fleet_can_redeliver() -> None:
    settings = RetentionSettings.from_env(
        {"RALLY_PROCESSED_HORIZON": "1m", "RALLY_RETENTION": "10m"}
    )
    # consumer_timeout 30 min + 5 attempts x 60 s retry horizon
    assert settings.processed_horizon == timedelta(minutes=35)
    assert settings.effective_retention == timedelta(minutes=35)  # never under the horizon
    assert json.dumps(str(settings.archive)) == json.dumps("var/archive")
