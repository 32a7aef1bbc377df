"""Cases 7 and 8 of issue 8: the same command many times at once, and replicas racing.

7. Every command published five times at once with the same message id (what
   a publisher that lost its confirm does), to three task-manager replicas:
   exactly one effect each — one TaskSubmitted per submit, one TaskStarted,
   one TaskProgressed per progress report, one TaskSucceeded.
8. Three replicas racing on one aggregate: a hundred tasks submitted at once
   that all depend on one task (each submit appends to that task's stream),
   and fifty progress reports on it at once. Its versions run 1..n without a
   hole, and nothing is lost: every dependent and every report is recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from broker.publisher import Publisher
from contracts import (
    AssignTask,
    Envelope,
    Message,
    ReportTaskProgress,
    ReportTaskStarted,
    ReportTaskSucceeded,
    SubmitTask,
)
from tests.support.hand import Hand, scripted_agent
from tests.support.harness import AGENTS, Harness
from tests.support.workload import FAST_BACKOFF

pytestmark = [
    pytest.mark.broker,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.asyncio(loop_scope="module"),
]

COPIES = 5


async def send_copies(publishers: list[Publisher], envelope: Envelope[Any]) -> None:
    """The same envelope (bytes and message id) through several channels at once."""
    key = f"{envelope.payload.route}.{envelope.type}"
    topology = publishers[0].topology
    await asyncio.gather(
        *(p.publish(envelope, exchange=topology.commands, routing_key=key) for p in publishers)
    )


def report(hand: Hand, assign: AssignTask, cls: type[Message], **fields: Any) -> Message:
    return cls.model_validate(
        {
            "task_id": assign.task_id,
            "agent_id": hand.agent.agent_id,
            "attempt": assign.attempt,
            "fencing_token": assign.fencing_token,
            **fields,
        }
    )


async def publishers(h: Harness, sender: str) -> list[Publisher]:
    assert h.conn is not None
    return [await Publisher(h.conn, sender=sender).start() for _ in range(COPIES)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(
    fault_amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    """One fleet for both tests: each judges only the work it sent (Workload.next)."""
    base: Path = tmp_path_factory.mktemp("races")
    async with Harness(
        amqp_url=fault_amqp_url, store_url=f"sqlite:///{base}/rally.db", log_dir=base / "logs"
    ) as harness:
        await harness.start(agents=AGENTS)
        yield harness


async def test_the_same_command_many_times_at_once_has_exactly_one_effect(
    fleet: Harness, record: Callable[[dict[str, Any]], None]
) -> None:
    started = time.monotonic()
    h = fleet
    h.workload = h.workload.next()
    hand = await scripted_agent(h, "hand-7")
    try:
        senders = await publishers(h, h.client.client_id)
        submits = [
            Envelope.wrap(
                SubmitTask(
                    capability="work",
                    payload={"ms": 10},
                    max_attempts=10,
                    backoff=FAST_BACKOFF,
                    reply_to=h.client.client_id,
                ),
                sender=h.client.client_id,
            )
            for _ in range(60)
        ]
        manual = Envelope.wrap(
            SubmitTask(capability="manual", reply_to=h.client.client_id),
            sender=h.client.client_id,
        )
        await asyncio.gather(*(send_copies(senders, e) for e in [*submits, manual]))
        h.workload.accepted |= {e.payload.task_id for e in [*submits, manual]}
        assign = await asyncio.wait_for(hand.assigned.get(), 20)
        agent_senders = await publishers(h, hand.agent.agent_id)

        def wrap(message: Message) -> Envelope[Any]:
            return Envelope.wrap(message, sender=hand.agent.agent_id)

        await send_copies(agent_senders, wrap(report(hand, assign, ReportTaskStarted)))
        await asyncio.gather(
            *(
                send_copies(
                    agent_senders,
                    wrap(report(hand, assign, ReportTaskProgress, progress=i / 20)),
                )
                for i in range(20)
            )
        )
        stream = f"task-{assign.task_id}"
        await h.history.wait_for(stream, "TaskProgressed", count=20)
        done = wrap(report(hand, assign, ReportTaskSucceeded, result={"ok": True}))
        await send_copies(agent_senders, done)
        verdict = await h.settle(timeout=60)
    finally:
        await hand.close()
    h.assert_no_crash()
    manual_types = [e.type for e in h.history.stream(stream)]
    ours = {str(t) for t in h.workload.accepted}
    submitted = [e for e in h.history.of_type("TaskSubmitted") if e.data["task_id"] in ours]
    record(
        {
            **verdict.counts,
            "copies_each": COPIES,
            "commands": len(submits) + 1 + 1 + 20 + 1,
            "task_submitted_events": len(submitted),
            "progress_events": manual_types.count("TaskProgressed"),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert len(submitted) == len(submits) + 1
    assert manual_types.count("TaskStarted") == 1
    assert manual_types.count("TaskProgressed") == 20
    assert manual_types.count("TaskSucceeded") == 1
    assert verdict.problems() == []
    assert verdict.ledger.terminal == verdict.ledger.accepted == len(submits) + 1


DEPENDENTS = 100
PROGRESS = 50


async def test_replicas_racing_on_one_aggregate_keep_versions_contiguous_and_lose_nothing(
    fleet: Harness, record: Callable[[dict[str, Any]], None]
) -> None:
    started = time.monotonic()
    h = fleet
    h.workload = h.workload.next()
    hand = await scripted_agent(h, "hand-8")
    try:
        root = await h.workload.submit_one(capability="manual")
        assert root is not None
        stream = f"task-{root}"
        assign = await asyncio.wait_for(hand.assigned.get(), 20)
        await hand.agent.report(assign, "started")
        await h.history.wait_for(stream, "TaskStarted")
        # every submit appends DependentAdded to the root's stream: 100 racing appends
        gate = asyncio.Semaphore(DEPENDENTS)

        async def dependent() -> None:
            async with gate:
                await h.workload.submit_one(depends_on=[root], payload={"ms": 5})

        progress = [
            hand.agent.send(report(hand, assign, ReportTaskProgress, progress=i / PROGRESS))
            for i in range(PROGRESS)
        ]
        await asyncio.gather(*(dependent() for _ in range(DEPENDENTS)), *progress)
        await h.history.wait_for(stream, "DependentAdded", count=DEPENDENTS, timeout=60)
        await h.history.wait_for(stream, "TaskProgressed", count=PROGRESS, timeout=60)
        await hand.agent.report(assign, "succeeded", result={"root": True})
        verdict = await h.settle(timeout=90)
    finally:
        await hand.close()
    h.assert_no_crash()
    root_events = h.history.stream(stream)
    versions = [e.version for e in root_events]
    types = [e.type for e in root_events]
    record(
        {
            **verdict.counts,
            "root_stream_versions": len(versions),
            "dependents_recorded": types.count("DependentAdded"),
            "progress_recorded": types.count("TaskProgressed"),
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert versions == list(range(1, len(versions) + 1))
    assert types.count("DependentAdded") == DEPENDENTS
    assert types.count("TaskProgressed") == PROGRESS
    assert verdict.problems() == []
    assert verdict.ledger.terminal == verdict.ledger.accepted == DEPENDENTS + 1
    assert verdict.counts["succeeded"] == DEPENDENTS + 1
