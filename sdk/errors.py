"""What the SDK raises, and what a handler raises to steer its report.

A capability handler reports failure by raising: any exception is a
*retryable* failure (the task manager schedules another attempt);
:class:`TaskError` carries the retry decision explicitly, in the Temporal
style, and :class:`NonRetryableError` is the short way to say "do not retry".
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from broker.errors import BrokerError


class SdkError(BrokerError):
    """Root of everything the agent SDK and the client raise."""


class TaskError(Exception):
    """Raised by a handler: the attempt failed, with an explicit retry decision."""

    def __init__(self, message: str, *, retryable: bool = True, error_type: str | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.error_type = error_type or type(self).__name__


class NonRetryableError(TaskError):
    """Raised by a handler: the task cannot succeed, do not try it again."""

    def __init__(self, message: str, *, error_type: str | None = None):
        super().__init__(message, retryable=False, error_type=error_type)


class TaskOutcomeError(SdkError):
    """The task ended without a result; ``error`` is what the task manager said."""

    def __init__(self, task_id: UUID, state: str, error: str | None, attempt: int = 0):
        super().__init__(f"task {task_id} ended {state}: {error or 'no detail'}")
        self.task_id = task_id
        self.state = state
        self.error = error
        self.attempt = attempt


class TaskFailedError(TaskOutcomeError):
    """The task ended dead: its attempts ran out or it failed for good."""


class TaskCancelledError(TaskOutcomeError):
    """The task was cancelled before it succeeded."""


class LeaseLostError(SdkError):
    """A lease was lost (expired or revoked) while the handler held it."""

    def __init__(self, resource: str, lease_id: UUID, reason: str):
        super().__init__(f"lease on {resource!r} lost: {reason}")
        self.resource = resource
        self.lease_id = lease_id
        self.reason = reason


class LeaseTimeout(SdkError):
    """No lease was granted within the time the caller was willing to wait."""


class TaskRefusedError(SdkError):
    """The task manager refused the submit and recorded nothing (``reason``: ``conflict``,
    ``too_large``): the task id or idempotency key belongs to another task, or the task
    could never be delivered to an agent."""

    def __init__(self, task_id: UUID, reason: str, detail: str = ""):
        super().__init__(f"task {task_id} refused ({reason}): {detail or 'no detail'}")
        self.task_id = task_id
        self.reason = reason
        self.detail = detail


def describe(exc: BaseException) -> dict[str, Any]:
    """The failure report fields for an exception a handler raised."""
    if isinstance(exc, TaskError):
        return {"error": exc.message, "error_type": exc.error_type, "retryable": exc.retryable}
    return {
        "error": f"{type(exc).__name__}: {exc}",
        "error_type": type(exc).__name__,
        "retryable": True,
    }
