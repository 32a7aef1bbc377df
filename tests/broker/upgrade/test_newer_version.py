"""A message one version ahead waits for a replica of the next release instead of dying.

During a rolling upgrade a replica of release N can be handed what release N+1 wrote. It
parks it through the delay queues (``x-rally-newer-since``) until a replica that reads it
takes it, and dead-letters it ``unknown_version`` only past the retry horizon, or at once
when it is further ahead than one release could be.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, ClassVar
from uuid import uuid4

import pytest

import contracts as c
from broker.connection import BrokerConnection
from broker.consumer import Consumer
from broker.publisher import Publisher
from broker.router import Incoming, Router
from broker.settle import newer_wait
from tests.support.amqp import depth, eventually, publish_bytes, take


@cache
def probe_type() -> type[c.Command]:
    """A command this test's "release" reads in version 1; the next one in version 2.

    Defined when the test runs, not on import: the protocol's schema and fuzz tests list
    every registered type, and this one is not part of the protocol."""

    class UpgradeProbe(c.Command):
        route: ClassVar[str | None] = "probe"
        n: int

    return UpgradeProbe


def body(version: int, n: int) -> bytes:
    return json.dumps(
        {
            "id": str(uuid4()),
            "type": "UpgradeProbe",
            "version": version,
            "correlation_id": str(uuid4()),
            "sender": "next-release",
            "sent_at": c.utcnow().isoformat(),
            "payload": {"n": n},
        }
    ).encode()


@pytest.mark.broker
async def test_a_next_release_message_waits_for_a_replica_that_reads_it(
    broker: BrokerConnection, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = broker.topology.work_queue("probe", command_keys=("probe.#",))
    handled: list[int] = []
    router = Router()

    async def handle(incoming: Incoming[Any]) -> None:
        handled.append(incoming.payload.n)

    probe = probe_type()
    router.add(probe, handle)

    def replica(name: str) -> Consumer:
        return Consumer(broker, spec, router, publisher, worker="probe", replica=name)

    old = await replica("old").start()
    try:
        await publish_bytes(broker, broker.topology.commands, "probe.UpgradeProbe", body(2, 7))
        # two releases ahead: no rolling upgrade explains it
        await publish_bytes(broker, broker.topology.commands, "probe.UpgradeProbe", body(3, 8))
        [dead] = await take(broker, spec.dlq, 1)
        assert dead.headers["x-rally-reason"] == "unknown_version"
        assert json.loads(dead.body)["version"] == 3
        # the version-2 one went round the delay queues at least once, and is not dead
        await eventually(lambda: old.settle.settled >= 3)
        assert handled == []
        assert await depth(broker, spec.dlq) == 0
    finally:
        await old.stop(timeout=5)

    # the replica is replaced by one of the next release, which reads version 2
    monkeypatch.setattr(probe, "version", 2)
    new = await replica("new").start()
    try:
        await eventually(lambda: handled == [7], timeout=30)
        assert await depth(broker, spec.dlq) == 0
    finally:
        await new.stop(timeout=5)


def test_parking_grows_from_a_second_and_ends_at_the_horizon() -> None:
    assert newer_wait(100.0, 100.0, 60.0, attempt=1) == 1.0
    assert newer_wait(100.0, 110.0, 60.0, attempt=5) == 16.0
    assert newer_wait(100.0, 150.0, 60.0, attempt=9) == 10.0  # never past the horizon
    assert newer_wait(100.0, 160.0, 60.0, attempt=9) is None  # then: dead-letter it
