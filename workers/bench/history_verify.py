"""Is a built history one the fleet could have written? ``check_history`` over all of it.

The builder leaves a few tasks open on purpose (a fleet stopped mid-run), and
``check_history`` rightly says each of them never ended; those lines, and only
those, are expected. Anything else is a builder bug.
"""

from __future__ import annotations

from workers.history_check import HistoryReport, check_history
from workers.store.base import EventStore, RecordedEvent

PAGE = 5_000
NEVER_ENDED = "never reached a terminal state"


async def read_everything(store: EventStore) -> list[RecordedEvent]:
    records: list[RecordedEvent] = []
    position = 0
    while page := await store.read_all(position, PAGE):
        records += page
        position = page[-1].position
    return records


def unexpected_violations(report: HistoryReport, open_task_ids: set[str]) -> list[str]:
    expected = {f"task {task} {NEVER_ENDED}" for task in open_task_ids}
    return [v for v in report.violations if v not in expected]


async def verify(store: EventStore, open_task_ids: set[str]) -> tuple[HistoryReport, list[str]]:
    """The history's report, and its violations other than the open tasks never ending."""
    report = check_history(await read_everything(store))
    return report, unexpected_violations(report, open_task_ids)
