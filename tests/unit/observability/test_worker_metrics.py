"""The workers' own metrics without a broker: placement latency, timed appends, scrape gauges."""

from __future__ import annotations

import ast
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import pytest

from broker import metrics
from broker.metrics import ConsumerMetrics, ScrapeGauges
from contracts import TaskAssigned
from tests.support.scrape import local_scrape
from workers.cli.worker_cmd import commands
from workers.runtime import metrics as runtime_metrics
from workers.runtime.metrics import PlacementMetrics, TimedStore
from workers.store import NewEvent, RecordedEvent, open_store
from workers.store.errors import ConcurrencyError

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def record(kind: str, task_id: str, at: float, **data: Any) -> RecordedEvent:
    return RecordedEvent(
        position=0,
        stream=f"task-{task_id}",
        version=1,
        id=uuid4(),
        type=kind,
        schema_version=1,
        data={"task_id": task_id, **data},
        metadata={},
        recorded_at=T0 + timedelta(seconds=at),
    )


def assigned(task_id: str) -> dict[str, tuple[int, list[Any]]]:
    event = TaskAssigned(
        task_id=UUID(task_id), agent_id="a1", attempt=1, fencing_token=2, reason="test"
    )
    return {f"task-{task_id}": (1, [event])}


def test_placement_is_timed_from_placeable_to_assigned_by_whoever_placed_it() -> None:
    replica = f"p-{uuid4().hex[:8]}"
    observer = PlacementMetrics(replica)
    a, b, c = (str(uuid4()) for _ in range(3))
    observer.saw(record("TaskSubmitted", a, 0.0, ready=True))
    observer.saw(record("TaskSubmitted", b, 0.0, ready=True))
    observer.saw(record("TaskSubmitted", c, 0.0, ready=False))  # waits on a dependency
    observer.saw(record("TaskReady", c, 5.0))
    observer.placed(assigned(a))
    observer.placed(assigned(c))
    observer.saw(record("TaskAssigned", a, 2.0))
    observer.saw(record("TaskAssigned", b, 3.0))  # placed by another replica: not ours to time
    observer.saw(record("TaskAssigned", c, 5.5))
    # back to pending (its agent was lost) and placed again: timed from the requeue
    observer.saw(record("TaskRequeued", a, 10.0))
    observer.placed(assigned(a))
    observer.saw(record("TaskAssigned", a, 10.25))
    observer.saw(record("TaskSucceeded", a, 11.0))
    observer.saw(record("TaskDead", b, 12.0))

    labels = {"worker": "allocator", "replica": replica}
    scrape = local_scrape()
    assert scrape.value("rally_placement_seconds_count", **labels) == 3
    assert scrape.value("rally_placement_seconds_sum", **labels) == pytest.approx(2.75)
    assert scrape.value("rally_placement_seconds_bucket", le="0.25", **labels) == 1
    assert observer.ended == {"succeeded": 1, "dead": 1}
    assert observer.placeable_since == {}  # nothing kept for tasks that are placed or over


async def test_appends_are_timed_and_conflicts_counted(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/rally.db")
    await store.start()
    replica = f"s-{uuid4().hex[:8]}"
    timed = TimedStore(store, worker="tasks", replica=replica)
    try:
        await timed.append("task-1", 0, [NewEvent("TaskSubmitted", {"n": 1})])
        with pytest.raises(ConcurrencyError):
            await timed.append("task-1", 0, [NewEvent("TaskSubmitted", {"n": 2})])
        assert [r.data for r in await timed.read("task-1")] == [{"n": 1}]
        assert await timed.acquire_lease("x", "me", 5.0)  # what the store adds passes through
    finally:
        await timed.close()
    labels = {"worker": "tasks", "replica": replica}
    scrape = local_scrape()
    assert scrape.value("rally_store_append_seconds_count", **labels) == 2
    assert scrape.value("rally_store_append_conflicts_total", **labels) == 1


def test_a_broken_source_costs_only_its_own_samples() -> None:
    name = f"rally_test_gauge_{uuid4().hex[:8]}"
    gauges = ScrapeGauges({name: ("A test gauge.", ("worker", "replica"))})

    def broken() -> Iterator[metrics.Sample]:
        raise RuntimeError("a projection in a bad way")

    def fine() -> Iterator[metrics.Sample]:
        yield name, ("w", "r"), 3.0

    detach_broken = gauges.attach(broken)
    detach_fine = gauges.attach(fine)
    assert local_scrape().value(name, worker="w", replica="r") == 3.0
    detach_fine()
    detach_broken()
    assert not local_scrape().find(name)
    metrics.REGISTRY.unregister(gauges)


async def test_a_taken_port_is_a_clear_error_and_a_shared_one_is_shared() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await metrics.serve(port, "127.0.0.1")
    one = await metrics.serve(port, "127.0.0.1")
    two = await metrics.serve(port, "127.0.0.1")  # a second agent in this process
    assert one is two
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session:
        await metrics.release(two, port)
        async with session.get(url) as response:
            assert response.status == 200  # still served for the first user
        await metrics.release(one, port)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(url):
                pass


def test_port_numbers_are_checked() -> None:
    assert metrics.port_number("9100") == 9100
    assert metrics.port_number("0") == 0
    for bad in ("-1", "65536", "http"):
        with pytest.raises(Exception, match="not a TCP port"):
            metrics.port_number(bad)


def test_rally_worker_gives_each_process_its_own_port() -> None:
    ports = [command[-1] for command in commands("all", 2, 9100)]
    assert ports == ["9100", "9101", "9102", "9103", "9104", "9105"]
    assert all(c[-2] == "--metrics-port" for c in commands("tasks", 3, 0))
    assert {c[-1] for c in commands("tasks", 3, 0)} == {"0"}  # each takes a free port
    assert "--metrics-port" not in commands("tasks", 1)[0]


def test_a_closed_consumer_leaves_no_series_behind() -> None:
    replica = f"client-{uuid4().hex[:8]}"
    consumer = ConsumerMetrics("client", replica)
    consumer.acked("TaskOutcome", 0.0)
    consumer.retried("TaskOutcome", "ValueError")
    consumer.dead_lettered(None, "malformed")
    assert any(labels.get("replica") == replica for _, labels, _ in local_scrape().samples)
    consumer.close()
    assert not any(labels.get("replica") == replica for _, labels, _ in local_scrape().samples)


def test_worker_metrics_import_no_worker() -> None:
    """The allocator imports PlacementMetrics from here: importing it back (anywhere in the
    module, lazily or not) would be a cycle."""
    tree = ast.parse(Path(runtime_metrics.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.startswith("workers.allocator")}
