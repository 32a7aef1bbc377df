"""The dashboard reads the history incrementally: a bounded stretch per refresh, never twice."""

from __future__ import annotations

from uuid import uuid4

from broker.settings import BrokerSettings
from contracts import TaskSubmitted, utcnow
from workers.dashboard.service import Dashboard, DashboardConfig
from workers.runtime.messages import new_event
from workers.store import open_store


async def test_a_long_history_is_caught_up_a_bounded_stretch_at_a_time(store_url: str) -> None:
    store = open_store(store_url)
    await store.start()
    for _ in range(7):
        task_id = uuid4()
        event = TaskSubmitted(submitted_at=utcnow(), task_id=task_id, capability="echo", ready=True)
        await store.append(f"task-{task_id}", 0, [new_event(event)])
    config = DashboardConfig(
        store_url=store_url,
        broker=BrokerSettings(namespace="unused"),
        page=2,
        max_pages_per_refresh=2,
    )
    dashboard = Dashboard(config)  # not started: no loops, no broker; its store opened by hand
    await dashboard.store.start()
    try:
        seen = []
        for _ in range(3):
            await dashboard.catch_up()
            seen.append((dashboard.projection.position, dashboard.behind))
        assert seen == [(4, True), (7, False), (7, False)]
        assert dashboard.projection.by_state == {"pending": 7}

        task_id = uuid4()
        event = TaskSubmitted(submitted_at=utcnow(), task_id=task_id, capability="echo", ready=True)
        await store.append(f"task-{task_id}", 0, [new_event(event)])
        await dashboard.catch_up()
        assert (dashboard.projection.position, dashboard.projection.by_state["pending"]) == (8, 8)
        assert dashboard.overview()["store"]["position"] == 8
    finally:
        await dashboard.store.close()
        await store.close()
