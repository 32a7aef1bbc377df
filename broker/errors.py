"""What broker/ raises, and the two exceptions a handler raises to steer its delivery.

Handlers never touch the delivery: they return to ack, raise :class:`Retry`
to try again later, or :class:`Reject` to dead-letter at once.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Root of everything broker/ raises."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached; the message names the URL."""


class PublishFailed(BrokerError):
    """The broker did not confirm a publish (nack, channel lost, or time-out)."""


class PublishTimeout(PublishFailed):
    """No confirm within the publish time-out."""


class Unroutable(PublishFailed):
    """The broker returned a mandatory message: no queue is bound for it."""


class TopologyError(BrokerError):
    """Declared topology is missing or differs from what the code expects."""


class Retry(Exception):
    """Transient failure: deliver again after ``after`` seconds (back-off if None)."""

    def __init__(self, reason: str = "retry requested", *, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class DependencyUnavailable(Exception):
    """Something the handler needs (the event store) is down: not the message's fault.

    The consumer keeps such a delivery unacked and runs the handler again, with
    back-off, until it succeeds: it uses up none of the message's attempts and is
    never dead-lettered for it.
    """


class Reject(Exception):
    """Permanent failure: dead-letter now with this reason, no retry."""

    def __init__(self, detail: str, *, reason: str = "rejected") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
