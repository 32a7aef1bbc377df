"""A replica killed with SIGKILL mid-handling: the broker gives its message to another replica."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import contracts as c
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.publisher import Publisher
from broker.router import Incoming, Router
from tests.support.amqp import eventually
from tests.support.paths import ROOT

pytestmark = pytest.mark.broker


async def test_sigkill_mid_handling_redelivers_to_another_replica(
    broker: BrokerConnection, publisher: Publisher, amqp_url: str, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "taken"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stuck_worker", amqp_url, namespace, str(marker)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        await eventually(lambda: marker.with_suffix(".ready").exists(), timeout=20)
        await publisher.send(c.RegisterAgent(agent_id="survivor", capabilities=("x",), capacity=1))
        await eventually(marker.exists, timeout=10)  # replica 0 is inside its handler now
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    got: list[Incoming[c.RegisterAgent]] = []
    router = Router()

    @router.on(c.RegisterAgent)
    async def take_over(msg: Incoming[c.RegisterAgent]) -> None:
        got.append(msg)

    spec = broker.topology.work_queue("registry")
    consumer = await Consumer(
        broker, spec, router, publisher, worker="registry", replica="1"
    ).start()
    try:
        await eventually(lambda: len(got) == 1, timeout=15)
        assert got[0].payload.agent_id == "survivor"
        assert got[0].redelivered  # the same delivery, handed on after the crash
        await asyncio.sleep(0.2)
        assert len(got) == 1
    finally:
        await consumer.stop(timeout=5)
