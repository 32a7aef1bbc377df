"""`rally task list` and `rally task show` against a real store (both), no workers running."""

from __future__ import annotations

import asyncio
import json
import shlex
from uuid import uuid4

from tests.support.cli import rally
from tests.support.fixtures.store import StoreFactory
from tests.support.task_events import lifecycle, record, submitted
from workers.readmodels import database_for
from workers.store.base import NewEvent
from workers.tasks.state import stream_of


async def test_list_filters_pages_and_prints_the_next_command(
    any_store_url: str, opened: StoreFactory
) -> None:
    store = await opened(any_store_url)
    done = [uuid4() for _ in range(3)]
    for n, task_id in enumerate(done):
        await record(store, task_id, *lifecycle(task_id, minutes=n))
    waiting = uuid4()
    await record(store, waiting, submitted(waiting, capability="render", minutes=10))

    code, out, _ = await asyncio.to_thread(
        rally, "task", "list", "--state", "succeeded", "--json", "--store", any_store_url
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [line["task_id"] for line in lines] == [str(t) for t in reversed(done)]
    assert {"task_id", "state", "capability", "priority", "attempt", "agent_id", "error"} <= set(
        lines[0]
    )
    assert (lines[0]["owner"], lines[0]["expired"]) == ("alice", False)

    _, out, _ = await asyncio.to_thread(
        rally, "task", "list", "--capability", "render", "--json", "--store", any_store_url
    )
    assert [json.loads(line)["task_id"] for line in out.splitlines()] == [str(waiting)]

    _, out, _ = await asyncio.to_thread(
        rally, "task", "list", "--limit", "2", "--json", "--store", any_store_url
    )
    *rows, last = [json.loads(line) for line in out.splitlines()]
    assert [r["task_id"] for r in rows] == [str(waiting), str(done[2])]
    assert set(last) == {"next_cursor"}

    _, out, _ = await asyncio.to_thread(
        rally, "task", "list", "--limit", "2", "--store", any_store_url
    )
    (more,) = [line for line in out.splitlines() if line.startswith("more: ")]
    argv = shlex.split(more.removeprefix("more: "))
    assert argv[:3] == ["rally", "task", "list"]
    _, out, _ = await asyncio.to_thread(rally, *argv[1:])
    assert str(done[1]) in out
    assert str(done[0]) in out
    assert "more: " not in out


async def test_show_answers_an_expired_task_with_its_final_state(
    any_store_url: str, opened: StoreFactory
) -> None:
    store = await opened(any_store_url)
    task_id = uuid4()
    await record(store, task_id, *lifecycle(task_id))
    _, out, _ = await asyncio.to_thread(rally, "task", "list", "--store", any_store_url)
    assert "succeeded" in out
    # what retention does: mark the row, then delete the task's history from the hot store
    db = database_for(store)
    await db.execute(
        "UPDATE readmodel_tasks SET expired = ? WHERE task_id = ?", (True, str(task_id))
    )
    await db.execute("DELETE FROM events WHERE stream = ?", (stream_of(task_id),))

    code, out, _ = await asyncio.to_thread(
        rally, "task", "show", str(task_id), "--store", any_store_url
    )
    assert code == 0
    assert out.strip() == f"task {task_id}: succeeded, expired (its history was archived)"
    _, out, _ = await asyncio.to_thread(
        rally, "task", "show", str(task_id), "--json", "--store", any_store_url
    )
    shown = json.loads(out)
    assert (shown["state"], shown["expired"], shown["timeline"]) == ("succeeded", True, [])
    _, out, _ = await asyncio.to_thread(rally, "task", "list", "--store", any_store_url)
    assert "(expired)" in out
    code, _, err = await asyncio.to_thread(
        rally, "task", "show", str(uuid4()), "--store", any_store_url
    )
    assert code != 0
    assert "no task" in err


async def test_list_still_answers_when_a_record_cannot_be_read_and_says_why(
    any_store_url: str, opened: StoreFactory
) -> None:
    store = await opened(any_store_url)
    ok, broken = uuid4(), uuid4()
    await record(store, ok, *lifecycle(ok))
    await record(store, broken, submitted(broken, minutes=1))
    await store.append(stream_of(broken), None, [NewEvent("TaskTeleported", {"task_id": "x"})])
    code, out, err = await asyncio.to_thread(
        rally, "task", "list", "--json", "--store", any_store_url
    )
    assert code == 0
    assert {json.loads(line)["task_id"] for line in out.splitlines()} == {str(ok), str(broken)}
    assert "warning: the tasks view stopped before position" in err
    assert "TaskTeleported" in err
