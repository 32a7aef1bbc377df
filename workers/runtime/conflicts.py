"""Reload-and-decide-again on a version conflict, a few times, then hand back to the broker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from broker.errors import Retry
from workers.store.errors import ConcurrencyError

log = structlog.get_logger(__name__)

T = TypeVar("T")


async def on_conflict_retry(
    attempt: Callable[[], Awaitable[T]], *, attempts: int = 5, what: str = "append"
) -> T:
    """Run ``attempt`` (load → decide → append) until it commits without a conflict.

    Past ``attempts`` the message goes back to the broker's retry with back-off
    (``Retry``) rather than spinning here: whoever wins the race keeps winning
    only while the stream is hot, and the delay queue cools it down.
    """
    try:  # the common case, without building a retry loop per message
        return await attempt()
    except ConcurrencyError as exc:
        if attempts <= 1:
            raise Retry(f"{what}: version conflict ({exc})") from None
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(ConcurrencyError),
        stop=stop_after_attempt(attempts - 1),  # one was spent above
        wait=wait_random_exponential(multiplier=0.005, max=0.1),
    )
    try:
        async for round_ in retrying:
            with round_:
                return await attempt()
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        log.warning("conflict.gave_up", what=what, error=str(cause))
        raise Retry(f"{what}: version conflicts after {attempts} attempts ({cause})") from None
    raise AssertionError("unreachable")  # pragma: no cover
