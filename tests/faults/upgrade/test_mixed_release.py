"""A rolling upgrade: release N's replicas are replaced one by one while tasks flow.

Release N is commit 845556b, the first commit whose readers follow docs/upgrades.md:
events and notices ignore unknown fields, TaskSubmitted is read in versions 1 and 2 and
written in 1, and a message one version ahead is parked for a newer replica. Everything
committed after it (read models, snapshots, retention and their store migrations, the
quorum-queue arguments, RegisterAgent/AgentJoined ``bundles``) is what this release adds.

Why not an earlier commit: 3218001 (the head of main before issue 16) refuses unknown
fields everywhere, so it cannot read the AgentJoined events this release's registry
writes (they carry ``bundles``): a fleet on 3218001 or older upgrades by stopping, or
first to 845556b and then on. That is the gap the rules close: from N on, an added
optional field in an event or notice no longer needs the fleet stopped.

N prepares the store and the topology and runs two replicas of each worker and both
agent groups; the client is this release (clients only submit, a command N reads).
Then each worker replica is stopped (SIGTERM) and a replica of this release started in
its place, one at a time, waiting for tasks to finish in each mix; workers go first,
then agents (docs/upgrades.md: a new SDK may send command fields only new workers take):
a group of this release's agents joins and N's agents leave. The verdict comes from the
history alone (workers/history_check.py): lost = duplicated = 0, nothing dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.faults.upgrade.releases import ReleaseFleet, checkout
from tests.support.amqp import take
from tests.support.fleet import WORKERS, worker_name
from tests.support.harness import AGENT_HEARTBEAT_S, AGENTS, Harness
from workers.demo.scenario import AgentPlan

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(300)]

RELEASE_N = "845556b6dd7aa0c369b70c5359c65d9b2a6548da"
REPLICAS = 2
# replace one replica of each worker, then the second of each: every mix of N and N+1
NEW_AGENTS = [AgentPlan(f"c{i}", ("work",), 4) for i in range(3)]
ORDER = [(w, r) for r in range(REPLICAS) for w in ("tasks", "allocator", "registry")]


async def wait_started(fleet: ReleaseFleet, names: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(fleet.started(n) for n in names):
        assert not fleet.crashed(), f"release N died: {fleet.crashed()}\n{fleet.logs_tail()}"
        assert time.monotonic() < deadline, f"release N not up\n{fleet.logs_tail()}"
        await asyncio.sleep(0.1)


async def more_succeeded(h: Harness, count: int, timeout: float = 60) -> None:
    """Until ``count`` more tasks have succeeded: the current mix did real work."""
    await h.history.refresh()
    target = len(h.history.of_type("TaskSucceeded")) + count
    deadline = time.monotonic() + timeout
    while True:
        await h.history.refresh()
        if len(h.history.of_type("TaskSucceeded")) >= target:
            return
        assert time.monotonic() < deadline, f"no {count} tasks done in this mix"
        await asyncio.sleep(0.1)


async def test_replicas_replaced_one_by_one_under_load_lose_and_repeat_nothing(
    amqp_url: str, tmp_path: Path
) -> None:
    old_root = checkout(RELEASE_N, tmp_path / "release-n")
    store_url = f"sqlite:///{tmp_path}/rally.db"
    h = Harness(amqp_url=amqp_url, store_url=store_url, log_dir=tmp_path / "logs")
    old = ReleaseFleet(old_root, {**h.fleet.env}, tmp_path / "logs" / "release-n")
    (tmp_path / "logs" / "release-n").mkdir(parents=True)
    old.prepare(store_url)  # N made the store and the topology; this release expands them
    try:
        async with h:
            await run_upgrade(h, old)
    finally:
        await asyncio.to_thread(old.close, 10.0)


async def run_upgrade(h: Harness, old: ReleaseFleet) -> None:
    first = old.start_workers(1, WORKERS)
    await wait_started(old, first)
    rest = [old.start_worker(w, r) for r in range(1, REPLICAS) for w in WORKERS]
    await wait_started(old, rest)
    for group, plans in AGENTS.items():
        h.agent_ids += [p.agent_id for p in plans]
        old.start_agents(group, plans, AGENT_HEARTBEAT_S)
    await h.start(agents={}, workers=())  # waits for N's agents to join; connects the client

    stop = asyncio.Event()
    load = asyncio.create_task(h.workload.steady(stop, per_second=25, limit=2000))
    await more_succeeded(h, 20)  # all of N, working
    for worker, replica in ORDER:
        old.stop(worker_name(worker, replica))
        h.fleet.start_worker(worker, f"n{replica}")
        await h.wait_ready(agents=False)
        await more_succeeded(h, 20)
        assert not old.crashed(), f"release N died: {old.crashed()}\n{old.logs_tail()}"
    # then the agents: this release's join, N's leave (SIGTERM: they say goodbye)
    await h.start(agents={"c": NEW_AGENTS}, workers=(), connect_client=False)
    await more_succeeded(h, 20)
    for group in AGENTS:
        old.stop(f"agents-{group}")
    await more_succeeded(h, 20)
    stop.set()
    await load
    verdict = await h.settle(timeout=90)
    h.assert_no_crash()

    assert verdict.problems() == []
    counts = verdict.counts
    assert (counts["lost"], counts["duplicated"]) == (0, 0), counts
    assert verdict.ledger.terminal == verdict.ledger.accepted >= 100
    assert verdict.ended["TaskSucceeded"] == verdict.ledger.accepted
    # both releases did the work: N's replicas "0"/"1", this release's "n0"/"n1"
    submitted_by = {e.metadata.get("replica") for e in h.history.of_type("TaskSubmitted")}
    assert {"0", "1", "n0", "n1"} <= submitted_by
    assert h.conn is not None
    for worker in WORKERS:
        dlq = f"{h.conn.topology.worker_queue(worker)}.dlq"
        dead = await take(h.conn, dlq, 100, timeout=0.5)
        assert dead == [], [(d.type, d.headers.get("x-rally-reason")) for d in dead]
