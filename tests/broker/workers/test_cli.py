"""`rally task show/list`, `rally agents` and `rally worker` against a real fleet."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from broker.settings import BrokerSettings
from contracts import AssignTask, SubmitTask, TaskOutcome
from tests.support.agent import Inbox, ScriptedAgent
from tests.support.history import History
from workers.cli.main import main

pytestmark = pytest.mark.broker

RALLY = sys.executable.replace("/python", "/rally") if "/bin/python" in sys.executable else "rally"


def rally(*argv: str) -> tuple[int, str]:
    """Run the CLI in a thread (it runs its own event loop) and capture stdout."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(list(argv))
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


async def test_task_show_tells_the_whole_story(
    history: History, agents: Any, client: Inbox, store_url: str
) -> None:
    async def flaky(agent: ScriptedAgent, task: AssignTask) -> None:
        await agent.report(task, "started")
        if task.attempt == 1:
            await agent.report(task, "failed", error="connection reset")
        else:
            await agent.report(task, "succeeded", result="ok")

    await agents("w1", capabilities=("crawl",), capacity=4, work=flaky)
    cmd = SubmitTask(capability="crawl", reply_to="client")
    cmd = cmd.model_copy(update={"backoff": cmd.backoff.model_copy(update={"initial_s": 0.05})})
    await client.publisher.send(cmd)  # type: ignore[attr-defined]
    await client.wait_for(lambda box: box.of(TaskOutcome))

    code, text = await asyncio.to_thread(
        rally, "task", "show", str(cmd.task_id), "--store", store_url
    )
    assert code == 0
    assert f"task {cmd.task_id}: succeeded" in text
    assert "placed on w1 (attempt 1, fencing token 2): least loaded of 1 agent" in text
    assert "attempt 1 failed on w1: connection reset" in text
    assert "retry as attempt 2 in 0.05s, because: connection reset" in text
    assert "succeeded on w1 (attempt 2)" in text

    code, text = await asyncio.to_thread(
        rally, "task", "show", str(cmd.task_id), "--json", "--store", store_url
    )
    data = json.loads(text)
    assert data["state"] == "succeeded"
    assert [e["type"] for e in data["timeline"]][:2] == ["TaskSubmitted", "TaskAssigned"]

    code, text = await asyncio.to_thread(
        rally, "task", "list", "--state", "succeeded", "--json", "--store", store_url
    )
    assert [json.loads(line)["task_id"] for line in text.splitlines()] == [str(cmd.task_id)]
    code, text = await asyncio.to_thread(rally, "agents", "--json", "--store", store_url)
    (row,) = [json.loads(line) for line in text.splitlines()]
    assert (row["agent_id"], row["status"], row["load"]) == ("w1", "live", 0)


@pytest.mark.slow
def test_rally_worker_runs_replicas_and_stops_on_sigterm(
    broker_settings: BrokerSettings, store_url: str, broker: Any
) -> None:
    env = {
        **os.environ,
        "RALLY_AMQP_URL": broker_settings.amqp_url,
        "RALLY_NAMESPACE": broker_settings.namespace,
        "RALLY_STORE_URL": store_url,
        "RALLY_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [RALLY, "worker", "tasks", "--replicas", "2"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        asyncio.run(_wait_for_consumers(broker_settings, 2))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read() if proc.stderr else ""


async def _wait_for_consumers(settings: BrokerSettings, n: int) -> None:
    """Both replicas consume from the tasks queue (a passive declare reports consumers)."""
    from broker.connection import BrokerConnection

    conn = await BrokerConnection(settings, role="probe").connect()
    try:
        async with asyncio.timeout(20):
            while True:
                channel = await conn.connection.channel()
                try:
                    queue = await channel.declare_queue(
                        conn.topology.worker_queue("tasks"), passive=True
                    )
                    if (queue.declaration_result.consumer_count or 0) >= n:
                        return
                except Exception:  # not declared yet (the passive declare closed the channel)
                    pass
                finally:
                    if not channel.is_closed:
                        await channel.close()
                await asyncio.sleep(0.2)
    finally:
        await conn.close()
