"""Why a message died, in words an operator reads once and understands, with what to do next.

Pure: a :class:`DeadLetter` in, sentences out. One entry per reason; an unknown
reason still gets its raw error text, never nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workers.dlq.model import DeadLetter


@dataclass(frozen=True, slots=True)
class Explanation:
    summary: str  # one sentence: what happened
    details: tuple[str, ...]  # e.g. one line per invalid field
    hint: str  # what to do about it


def explain(letter: DeadLetter) -> Explanation:
    describe = _REASONS.get(letter.reason, _unknown)
    summary, hint = describe(letter)
    details = tuple(f"field {e.loc}: {e.msg}" for e in letter.field_errors)
    return Explanation(summary=summary, details=details, hint=hint)


def headline(letter: DeadLetter) -> str:
    """The summary alone, with the field errors folded in (for one-line output)."""
    text = explain(letter)
    return "; ".join((text.summary, *text.details))


def _error(letter: DeadLetter) -> str:
    return (letter.error or "(no error text was recorded)").strip()


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _malformed(d: DeadLetter) -> tuple[str, str]:
    detail = _error(d).removeprefix("body is not valid JSON: ")
    if _error(d).startswith("body is not valid JSON"):
        summary = f"the body is not JSON: {detail}"
    else:
        summary = f"the body is not a message envelope: {detail}"
    return summary, (
        "fix the sender; replaying it as is would fail the same way "
        f"(correct it with `rally dlq replay {d.id} --edit FILE`)"
    )


def _invalid(d: DeadLetter) -> tuple[str, str]:
    kind = d.message_type or "its"
    fields = ", ".join(e.loc for e in d.field_errors) or "see the error"
    summary = f"the message does not match the {kind} contract (fields: {fields})"
    if not d.field_errors:
        summary += f": {_error(d)}"
    return summary, (
        f"fix the sender, or correct the body and `rally dlq replay {d.id} --edit FILE`"
    )


def _unknown_type(d: DeadLetter) -> tuple[str, str]:
    return (
        f"no contract or no handler in {d.queue} knows the message type "
        f"{d.message_type or '(none)'}: {_error(d)}",
        "deploy a worker that handles the type (or fix the sender), then replay",
    )


def _unknown_version(d: DeadLetter) -> tuple[str, str]:
    return (
        f"the sender is ahead of the worker: {_error(d)}",
        "upgrade the worker (or add an upcaster), then replay",
    )


def _too_large(d: DeadLetter) -> tuple[str, str]:
    return (
        f"the message is larger than the size limit: {_error(d)}",
        "send large data by reference (a URL or a resource), not inline",
    )


def _handler_error(d: DeadLetter) -> tuple[str, str]:
    kind = d.error_type or "an exception"
    error = _error(d).removeprefix(f"{d.error_type}: ") if d.error_type else _error(d)
    return (
        f"the handler raised {kind} {_times(d.attempts)}: {error}",
        f"a bug or a lasting outage: fix it, then `rally dlq replay {d.id}`",
    )


def _retries_exhausted(d: DeadLetter) -> tuple[str, str]:
    return (
        f"the handler asked for a retry on all {d.attempts} attempts: {_error(d)}"
        if d.attempts > 1
        else f"the handler asked for a retry on its only attempt: {_error(d)}",
        "check what it was waiting for (a dependency, a resource), then replay",
    )


def _rejected(d: DeadLetter) -> tuple[str, str]:
    return (
        f"the handler rejected it as a permanent failure: {_error(d)}",
        "replay only if what made it wrong has changed",
    )


def _security(d: DeadLetter) -> tuple[str, str]:
    who = f" (sent by broker user {d.user_id})" if d.user_id else ""
    return (
        f"a security check refused it{who}: {_error(d)}",
        "do not replay unless the sender is allowed to send this",
    )


def _delivery_limit(d: DeadLetter) -> tuple[str, str]:
    return (
        f"RabbitMQ gave up after {d.attempts} deliveries "
        "(the worker died or timed out while handling it)",
        "look for crashes or hangs in the worker's logs at that time, then replay",
    )


def _expired(d: DeadLetter) -> tuple[str, str]:
    return (
        f"its time-to-live ran out in {d.queue} before any consumer took it",
        "check that a worker consumes the queue, then replay",
    )


def _nacked(d: DeadLetter) -> tuple[str, str]:
    return (
        f"a consumer of {d.queue} rejected it without requeue (basic.reject or basic.nack)",
        "a consumer outside the rallypoint runtime refused it; see that consumer",
    )


def _maxlen(d: DeadLetter) -> tuple[str, str]:
    return (
        f"{d.queue} was full and RabbitMQ dropped it to make room",
        "add consumers or capacity, then replay",
    )


def _unknown(d: DeadLetter) -> tuple[str, str]:
    return f"dead-lettered for reason {d.reason!r}: {_error(d)}", "inspect the headers below"


_REASONS: dict[str, Callable[[DeadLetter], tuple[str, str]]] = {
    "malformed": _malformed,
    "invalid": _invalid,
    "unknown_type": _unknown_type,
    "unknown_version": _unknown_version,
    "too_large": _too_large,
    "handler_error": _handler_error,
    "retries_exhausted": _retries_exhausted,
    "rejected": _rejected,
    "security": _security,
    "delivery_limit": _delivery_limit,
    "expired": _expired,
    "nacked": _nacked,
    "maxlen": _maxlen,
}
