"""Publishes counted in the processes the bench starts, beside the counters they already keep.

The consumers count what they handle (``rally_messages_handled``) and the
workers time every store append (``rally_store_append_seconds``), but nothing
in ``broker/`` counts what a :class:`~broker.publisher.Publisher` sends. Until
it does, the bench's own processes (worker replicas through
:mod:`workers.bench.worker_proc`, agents through :mod:`workers.bench.agent_proc`,
and the bench process for its client) call :func:`install`, which wraps the
publisher's entry points to count, in the process's metrics registry:

- ``rally_bench_published``: messages handed to the publisher, by type (each
  member of a bundle counts, as the consumers count them);
- ``rally_bench_unroutable``: those the broker returned, no queue being bound;
- ``rally_bench_broker_publishes``: AMQP publishes (a bundle is one).

They are read like any other series, from the same ``/metrics``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import Counter

from broker.errors import Unroutable
from broker.metrics import REGISTRY
from broker.publisher import Outgoing, Publisher

PUBLISHED = "rally_bench_published"
UNROUTABLE = "rally_bench_unroutable"
BROKER_PUBLISHES = "rally_bench_broker_publishes"
NO_TYPE = "untyped"

_published = Counter(
    PUBLISHED, "Messages handed to a publisher, by type.", ("type",), registry=REGISTRY
)
_unroutable = Counter(
    UNROUTABLE, "Messages the broker returned unroutable, by type.", ("type",), registry=REGISTRY
)
_broker_publishes = Counter(
    BROKER_PUBLISHES, "AMQP publishes, a bundle counting once.", registry=REGISTRY
)
_MARK = "_rally_bench_counted"


def _type(message: Outgoing) -> str:
    return message.type or NO_TYPE


def install() -> bool:
    """Count every publish of this process from now on; False if the publisher has changed
    shape and cannot be counted (the bench then reports publishes as not measured)."""
    if getattr(Publisher, _MARK, False):
        return True
    raw = getattr(Publisher, "publish_raw", None)
    each = getattr(Publisher, "publish_each", None)
    once = getattr(Publisher, "_publish_once", None)
    if raw is None or each is None or once is None:
        return False

    @functools.wraps(raw)
    async def publish_raw(self: Publisher, message: Outgoing) -> None:
        _published.labels(_type(message)).inc()
        try:
            await raw(self, message)
        except Unroutable:
            _unroutable.labels(_type(message)).inc()
            raise

    @functools.wraps(each)
    async def publish_each(
        self: Publisher, messages: Sequence[Outgoing]
    ) -> list[BaseException | None]:
        results: list[BaseException | None] = await each(self, messages)
        for message, result in zip(messages, results, strict=True):
            _published.labels(_type(message)).inc()
            if isinstance(result, Unroutable):
                _unroutable.labels(_type(message)).inc()
        return results

    setattr(Publisher, "publish_raw", publish_raw)  # noqa: B010 - measured, not replaced
    setattr(Publisher, "publish_each", publish_each)  # noqa: B010
    setattr(Publisher, "_publish_once", _counted_once(once))  # noqa: B010
    setattr(Publisher, _MARK, True)
    return True


def _counted_once(
    once: Callable[[Publisher, Outgoing], Awaitable[None]],
) -> Callable[[Publisher, Outgoing], Awaitable[None]]:
    @functools.wraps(once)
    async def publish_once(self: Publisher, message: Outgoing) -> None:
        _broker_publishes.inc()
        await once(self, message)

    return publish_once


def installed() -> bool:
    return bool(getattr(Publisher, _MARK, False))
