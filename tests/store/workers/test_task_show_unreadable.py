"""`rally task show` on a stream holding a record it cannot decode, against both real stores.

A newer release's event type, or a corrupted row, must not hide the rest of the
task's history: every readable event is shown, the unreadable one as a line that
says where it is, what it was stored as and why it could not be read, and the
state line says the state may be incomplete.
"""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

from tests.support.cli import rally
from tests.support.fixtures.store import StoreFactory
from tests.support.task_events import assigned, record, started, submitted, succeeded
from workers.store.base import NewEvent
from workers.tasks.state import stream_of


async def test_show_lists_every_readable_event_and_marks_the_unreadable_ones(
    any_store_url: str, opened: StoreFactory
) -> None:
    store = await opened(any_store_url)
    task_id = uuid4()
    await record(store, task_id, submitted(task_id), assigned(task_id))
    # a type this release does not know (a newer one's), then a known type whose payload is bad
    teleported = await store.append(
        stream_of(task_id), None, [NewEvent("TaskTeleported", {"task_id": str(task_id)})]
    )
    broken = await store.append(
        stream_of(task_id), None, [NewEvent("TaskProgressed", {"progress": "lots"})]
    )
    await record(store, task_id, started(task_id), succeeded(task_id))
    (teleported_at,) = teleported.positions
    (broken_at,) = broken.positions

    code, out, err = await asyncio.to_thread(
        rally, "task", "show", str(task_id), "--store", any_store_url
    )
    assert code == 0, err
    head, *lines = out.splitlines()
    assert head.startswith(f"task {task_id}: succeeded")
    assert "may be incomplete" in head
    assert "2 events could not be read" in head
    assert len(lines) == 6
    kinds = [line.split()[1] for line in lines]
    assert kinds == [
        "TaskSubmitted",
        "TaskAssigned",
        "TaskTeleported",
        "TaskProgressed",
        "TaskStarted",
        "TaskSucceeded",
    ]
    assert f"unreadable at position {teleported_at}" in lines[2]
    assert "no contract for message type 'TaskTeleported'" in lines[2]
    assert f"unreadable at position {broken_at}" in lines[3]
    assert "does not match its contract" in lines[3]
    assert "succeeded on w1" in lines[5]

    code, out, err = await asyncio.to_thread(
        rally, "task", "show", str(task_id), "--json", "--store", any_store_url
    )
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["state"], shown["incomplete"], shown["unreadable_events"]) == (
        "succeeded",
        True,
        2,
    )
    bad = [e for e in shown["timeline"] if e.get("unreadable")]
    assert [(e["position"], e["type"], e["version"]) for e in bad] == [
        (teleported_at, "TaskTeleported", 3),
        (broken_at, "TaskProgressed", 4),
    ]
    assert all(e["error"] for e in bad)
    assert len(shown["timeline"]) == 6


async def test_show_of_a_readable_task_says_nothing_about_completeness(
    any_store_url: str, opened: StoreFactory
) -> None:
    store = await opened(any_store_url)
    task_id = uuid4()
    await record(store, task_id, submitted(task_id), assigned(task_id), started(task_id))
    code, out, _ = await asyncio.to_thread(
        rally, "task", "show", str(task_id), "--store", any_store_url
    )
    assert code == 0
    assert out.splitlines()[0] == f"task {task_id}: running"
    _, out, _ = await asyncio.to_thread(
        rally, "task", "show", str(task_id), "--json", "--store", any_store_url
    )
    shown = json.loads(out)
    assert (shown["incomplete"], shown["unreadable_events"]) == (False, 0)
