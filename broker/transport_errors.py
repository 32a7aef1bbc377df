"""The AMQP library's errors, translated at the boundary into broker/'s own tree.

Code outside broker/ never names an aio-pika exception: it wraps its broker
calls in ``with transport_errors():`` and catches :class:`TransportError` (a
:class:`~broker.errors.BrokerError`), with the original chained as its cause.
"""

from __future__ import annotations

from types import TracebackType

import aio_pika

from broker.errors import BrokerError


class TransportError(BrokerError):
    """A channel or connection operation failed in the AMQP client (refused, closed, ...)."""


class transport_errors:
    """``with transport_errors():`` raises :class:`TransportError` for an AMQP error inside."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, aio_pika.exceptions.AMQPError):
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
