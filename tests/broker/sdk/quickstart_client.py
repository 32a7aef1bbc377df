import asyncio

from sdk import Client


async def main() -> None:
    async with Client() as client:
        print(await client.submit("crawl", {"url": "https://example.com"}).result(timeout=60))


asyncio.run(main())
