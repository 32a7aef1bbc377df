"""Holding a delivery while a dependency (the store) is down; the fault tests' crash hook."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from broker.errors import DependencyUnavailable

log = structlog.get_logger(__name__)

HOLD_MAX_S = 5.0  # the longest pause between tries of a delivery held while the store is down
T = TypeVar("T")


class LeftUnacked(Exception):
    """Stopping while a dependency is down: the delivery goes back to the broker unacked."""


async def until_available(
    call: Callable[[], Awaitable[T]], *, first_delay_s: float, stopping: Callable[[], bool]
) -> T:
    """Run ``call``; while a dependency (the store) is down, hold the delivery and run it again.

    The delivery stays unacked and no attempt is used up: the message is not at fault.
    If the consumer stops meanwhile, it is left unacked for the broker to hand on.
    """
    delay = max(first_delay_s, 0.05)
    while True:
        try:
            return await call()
        except DependencyUnavailable as exc:
            if stopping():
                raise LeftUnacked from exc
            log.warning("message.held", error=str(exc)[:300], retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
            delay = min(2 * delay, HOLD_MAX_S)


# Fault injection, for tests only (off by default): RALLY_FAULT_EXIT_AFTER_APPEND=n makes the
# process die like a SIGKILL after its nth handled delivery: the handler's append is committed,
# the delivery not yet acked. tests/faults/test_worker_crashes.py shows nothing is applied twice.
_FAULT_EXIT_AFTER_APPEND = int(os.environ.get("RALLY_FAULT_EXIT_AFTER_APPEND") or 0)
_fault_handled = 0


def fault_exit_after_append(message_id: str | None) -> None:
    global _fault_handled
    if _FAULT_EXIT_AFTER_APPEND:
        _fault_handled += 1
        if _fault_handled >= _FAULT_EXIT_AFTER_APPEND:
            print(f"rally-fault: exit after append of {message_id}, before its ack", flush=True)
            os._exit(70)
