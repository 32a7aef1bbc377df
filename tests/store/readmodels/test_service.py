"""The readmodels service: one replica follows the store (the lease), the others stand by."""

from __future__ import annotations

import asyncio
import contextlib
from uuid import uuid4

from tests.support.fixtures.store import StoreFactory
from tests.support.task_events import lifecycle, record
from workers.readmodels import database_for
from workers.readmodels.service import ReadModelsService
from workers.readmodels.task_queries import get_task
from workers.store.errors import StoreError


async def test_one_replica_keeps_the_tasks_view_current(
    any_store_url: str, opened: StoreFactory
) -> None:
    stores = [await opened(any_store_url) for _ in range(3)]
    services = [
        ReadModelsService(s, s, replica=str(n), interval_s=0.02) for n, s in enumerate(stores)
    ]
    for service in services:
        await service.start()
    try:
        task_id = uuid4()
        await record(stores[0], task_id, *lifecycle(task_id))
        db = database_for(stores[0])

        async def state() -> str | None:
            with contextlib.suppress(StoreError):  # no table until a runner has started
                row = await get_task(db, task_id)
                return row.state if row else None
            return None

        async with asyncio.timeout(20):
            # nothing to wait on but the database: no reader here catches up itself
            while await state() != "succeeded":  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert [s.active for s in services].count(True) == 1
    finally:
        for service in services:
            await service.stop()
