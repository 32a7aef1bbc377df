"""How long a valid message waits behind a bundle of bad members (issue 14, case 8).

Not a test (timings are not asserted): run it against the real broker to get figures::

    .venv/bin/python -m tests.broker.transport.bundle_delay [members ...]

For each bundle size it starts one tasks worker as a process of its own in a fresh
namespace, publishes a bundle of unparseable SubmitTask members and right behind it a valid
SubmitTask, and prints the time from that publish to the task's first event in the store
(median of 3 runs).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from broker.connection import BrokerConnection
from broker.declare import declare_topology, delete_namespace
from broker.settings import BrokerSettings
from contracts import BUNDLE_CONTENT_TYPE, BundleMember, Envelope, SubmitTask, encode, encode_bundle
from tests.support.amqp import publish_bytes
from tests.support.fixtures.broker import known_queues
from tests.support.paths import ROOT


def recorded(db: Path, task_id: str) -> bool:
    try:
        with sqlite3.connect(db) as store:
            row = store.execute("SELECT 1 FROM events WHERE stream = ?", (f"task-{task_id}",))
            return row.fetchone() is not None
    except sqlite3.Error:
        return False


async def once(members: int) -> float:
    namespace = f"rt-{uuid.uuid4().hex[:10]}"
    conn = await BrokerConnection(BrokerSettings(namespace=namespace), role="measure").connect()
    await declare_topology(conn)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "rally.db"
        env = {
            **os.environ,
            "RALLY_NAMESPACE": namespace,
            "RALLY_STORE_URL": f"sqlite:///{db}",
            "RALLY_LOG_LEVEL": "ERROR",
            "PYTHONPATH": str(ROOT),
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers.runtime.process", "--worker", "tasks"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            warm = SubmitTask(capability="work")  # the worker is up once this one is recorded
            commands = conn.topology.commands
            body = encode(Envelope.wrap(warm, sender="measure"))
            while not recorded(db, str(warm.task_id)):  # dropped until its queue is declared
                await publish_bytes(conn, commands, "tasks.SubmitTask", body, message_id="warm")
                await asyncio.sleep(0.2)
            bad = [BundleMember(b"{", f"bad-{i}", "SubmitTask") for i in range(members)]
            task = SubmitTask(capability="work")
            valid = encode(Envelope.wrap(task, sender="measure"))
            bundle = encode_bundle(bad)
            await publish_bytes(
                conn, commands, "tasks.SubmitTask", bundle, content_type=BUNDLE_CONTENT_TYPE
            )
            start = time.perf_counter()
            await publish_bytes(conn, commands, "tasks.SubmitTask", valid, message_id="ok")
            while not recorded(db, str(task.task_id)):  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.005)
            return time.perf_counter() - start
        finally:
            worker.terminate()
            worker.wait(30)
            await delete_namespace(conn, known_queues(conn.topology))
            await conn.close()


async def main(sizes: list[int]) -> None:
    for size in sizes:
        runs = [await once(size) for _ in range(3)]
        shown = ", ".join(f"{r:.3f}" for r in runs)
        median = statistics.median(runs)
        print(f"{size:>6} bad members: valid message recorded after {median:.3f} s ({shown})")


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [1, 1000, 10_000]))
