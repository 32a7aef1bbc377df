"""The agent SDK and the client: join the fleet and run tasks, or submit them and await results.

Agent::

    agent = Agent("crawler-1", capacity=4)

    @agent.capability("crawl")
    async def crawl(task: Task) -> dict:
        await task.progress(0.5, "half way")
        return {"pages": 3}

    asyncio.run(agent.run())

Client::

    async with Client() as client:
        print(await client.submit("crawl", {"url": "https://example.com"}).result())

The SDK speaks only to the broker: a task's state comes from the task manager
(``client.state``, ``client.history``), never from the event store.
"""

from contracts import TaskView, TimelineEntry
from sdk.agent import Agent
from sdk.client import Client, Submission, TaskHandle
from sdk.clock import Clock, SystemClock
from sdk.errors import (
    LeaseLostError,
    LeaseTimeout,
    NonRetryableError,
    SdkError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskOutcomeError,
    TaskRefusedError,
)
from sdk.lease import Lease
from sdk.task import Task

__all__ = [
    "Agent",
    "Client",
    "Clock",
    "Lease",
    "LeaseLostError",
    "LeaseTimeout",
    "NonRetryableError",
    "SdkError",
    "Submission",
    "SystemClock",
    "Task",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskHandle",
    "TaskOutcomeError",
    "TaskRefusedError",
    "TaskView",
    "TimelineEntry",
]
