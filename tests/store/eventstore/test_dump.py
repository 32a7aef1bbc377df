"""`rally events dump`: the public JSON Lines format."""

from __future__ import annotations

import io
import json
from datetime import datetime

from tests.support.fixtures.store import StoreFactory
from workers.cli.events import DUMP_KEYS, dump_events
from workers.store import Metadata, NewEvent


async def test_dump_writes_one_event_per_line_with_exactly_the_documented_keys(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    meta = Metadata(message_id="m-1", correlation_id="c-1", sender="client")
    for i in range(5):
        await store.append(
            f"task-{i}", 0, [NewEvent("TaskSubmitted", {"i": i, "név": "ü"})], metadata=meta
        )
        await store.append("agent-a1", None, [NewEvent("AgentHeartbeat", {"i": i})])

    out = io.StringIO()
    assert await dump_events(store, out, page_size=3) == (10, 10)  # several pages
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    records = [json.loads(line) for line in lines]
    assert all(list(r) == list(DUMP_KEYS) for r in records)
    assert DUMP_KEYS == (
        "position",
        "stream",
        "version",
        "type",
        "data",
        "metadata",
        "recorded_at",
        "schema_version",
        "id",
    )
    assert [r["position"] for r in records] == list(range(1, 11))
    first = records[0]
    assert (first["stream"], first["version"], first["type"]) == ("task-0", 1, "TaskSubmitted")
    assert first["data"] == {"i": 0, "név": "ü"}
    assert first["metadata"]["message_id"] == "m-1"
    assert first["recorded_at"].endswith("Z")
    assert datetime.fromisoformat(first["recorded_at"]).utcoffset() is not None

    out = io.StringIO()
    assert await dump_events(store, out, from_position=4, stream_prefix="agent") == (3, 10)
    assert [json.loads(x)["position"] for x in out.getvalue().splitlines()] == [6, 8, 10]
