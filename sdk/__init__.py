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
"""

from sdk.agent import Agent
from sdk.client import Client, Submission, TaskHandle
from sdk.clock import Clock, SystemClock
from sdk.errors import (
    LeaseLostError,
    LeaseTimeout,
    NoEventStore,
    NonRetryableError,
    SdkError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskOutcomeError,
)
from sdk.lease import Lease
from sdk.task import Task
from sdk.taskview import EventReader, TaskEvent, TaskStatus

__all__ = [
    "Agent",
    "Client",
    "Clock",
    "EventReader",
    "Lease",
    "LeaseLostError",
    "LeaseTimeout",
    "NoEventStore",
    "NonRetryableError",
    "SdkError",
    "Submission",
    "SystemClock",
    "Task",
    "TaskCancelledError",
    "TaskError",
    "TaskEvent",
    "TaskFailedError",
    "TaskHandle",
    "TaskOutcomeError",
    "TaskStatus",
]
