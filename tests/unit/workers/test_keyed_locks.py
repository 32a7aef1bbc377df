"""Per-key locks: one key's holders take turns in order, other keys run free, none pile up."""

from __future__ import annotations

import asyncio

from workers.runtime.keyed_locks import KeyedLocks


async def test_one_key_takes_turns_in_order_and_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    inside = 0
    most = 0

    async def use(key: str, name: str) -> None:
        nonlocal inside, most
        async with locks.hold(key):
            inside += 1
            most = max(most, inside)
            order.append(name)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(use("a", f"a{i}") for i in range(5)))
    assert order == ["a0", "a1", "a2", "a3", "a4"]
    assert most == 1

    release = asyncio.Event()

    async def hold_a() -> None:
        async with locks.hold("a"):
            await release.wait()

    holder = asyncio.create_task(hold_a())
    await asyncio.sleep(0)
    await asyncio.wait_for(use("b", "other"), 1)  # would time out if "b" waited for "a"
    release.set()
    await holder
    assert len(locks) == 0  # nothing kept once nobody holds or waits


async def test_overlapping_key_sets_do_not_deadlock() -> None:
    locks = KeyedLocks()

    async def both(first: str, second: str) -> None:
        async with locks.hold(first, second):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(
        asyncio.gather(*(both("x", "y") if i % 2 else both("y", "x") for i in range(10))), 5
    )
    assert len(locks) == 0


async def test_a_waiter_cancelled_gives_back_what_it_took_and_blocks_nobody() -> None:
    locks = KeyedLocks()
    release = asyncio.Event()

    async def hold(*keys: str) -> None:
        async with locks.hold(*keys):
            await release.wait()

    holder = asyncio.create_task(hold("b"))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold("a", "b"))  # takes "a", then waits for "b"
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await asyncio.wait_for(hold_briefly(locks, "a"), 1)  # "a" was given back
    release.set()
    await holder
    assert len(locks) == 0


async def hold_briefly(locks: KeyedLocks, key: str) -> None:
    async with locks.hold(key):
        pass
