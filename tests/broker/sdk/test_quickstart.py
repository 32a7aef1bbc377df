"""The README's quick start, run exactly as written (quickstart_agent.py, quickstart_client.py).

The scripts run as separate processes configured only by RALLY_* variables;
the test stands in for the workers: it assigns the agent's task and answers
the client's submission with an outcome.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from broker.connection import BrokerConnection
from broker.settings import BrokerSettings
from contracts import AssignTask, TaskOutcome
from tests.broker.sdk.conftest import Notify
from tests.support.paths import ROOT
from tests.support.standin import Observer

pytestmark = [pytest.mark.broker, pytest.mark.slow]

HERE = Path(__file__).parent


async def script(name: str, settings: BrokerSettings) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "RALLY_AMQP_URL": settings.amqp_url,
        "RALLY_NAMESPACE": settings.namespace,
        "PYTHONPATH": str(ROOT),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / name),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_ten_line_agent_and_three_line_client_work_as_written(
    broker: BrokerConnection,
    broker_settings: BrokerSettings,
    observer: Observer,
    notify: Notify,
) -> None:
    inbox = broker.topology.inbox_queue("crawler-1")
    broker.test_queues += [inbox.name, inbox.dlq]  # type: ignore[attr-defined]
    agent = await script("quickstart_agent.py", broker_settings)
    try:
        await observer.wait_for("RegisterAgent", timeout=30)
        assign = AssignTask(
            task_id=uuid4(),
            capability="crawl",
            payload={"url": "https://example.com"},
            attempt=1,
            fencing_token=1,
            timeout_s=30,
        )
        await notify("crawler-1", assign)
        (done,) = await observer.wait_for("ReportTaskSucceeded", timeout=15)
        assert done.payload.result == {"url": "https://example.com", "pages": 3}

        client = await script("quickstart_client.py", broker_settings)
        (submit,) = await observer.wait_for("SubmitTask", timeout=30)
        assert submit.payload.reply_to is not None
        await notify(
            submit.payload.reply_to,
            TaskOutcome(
                task_id=submit.payload.task_id,
                state="succeeded",
                attempt=1,
                result=done.payload.result,
            ),
        )
        out, err = await asyncio.wait_for(client.communicate(), 30)
        assert client.returncode == 0, err.decode()[-2000:]
        assert out.decode().strip() == "{'url': 'https://example.com', 'pages': 3}"
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(agent.communicate(), 30)
    assert agent.returncode == 0, err.decode()[-2000:]  # SIGTERM drains and exits cleanly
    assert observer.of("DeregisterAgent", lambda e: not e.payload.drain)
