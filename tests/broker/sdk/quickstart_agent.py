import asyncio

from sdk import Agent, Task

agent = Agent("crawler-1", capacity=4)


@agent.capability("crawl")
async def crawl(task: Task) -> dict[str, object]:
    await task.progress(0.5, "fetching")
    return {"url": task.payload["url"], "pages": 3}


asyncio.run(agent.run())
