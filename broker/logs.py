"""structlog set-up: JSON lines for machines, colour for a terminal, context bound per message."""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar, Token
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

# The fields of the message being handled, as one dict in one context variable. structlog's
# own contextvars keep one variable per key, and setting and resetting seven of them for
# every message showed up at several percent of a worker's time in profiles.
_message_fields: ContextVar[dict[str, Any] | None] = ContextVar("rally_log_fields", default=None)


class message_fields:
    """``with message_fields(message_id=..., ...):`` puts the fields on every log line inside.

    Nested blocks add to the outer fields; leaving a block restores them.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields
        self._token: Token[dict[str, Any] | None] | None = None

    def __enter__(self) -> None:
        outer = _message_fields.get()
        self._token = _message_fields.set({**outer, **self._fields} if outer else self._fields)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _message_fields.reset(self._token)


def bind_message_fields(**fields: Any) -> None:
    """Add fields for the rest of the current ``message_fields`` block (or task)."""
    outer = _message_fields.get()
    _message_fields.set({**outer, **fields} if outer else fields)


def current_message_fields() -> dict[str, Any]:
    return dict(_message_fields.get() or {})


def merge_message_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the message's fields, under what the log call itself passed.

    Add it to your own processors (next to ``merge_contextvars``) if you configure
    structlog yourself and want the message and correlation ids on the SDK's log lines.
    """
    fields = _message_fields.get()
    if fields:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write.

    Binding the stream object at configuration time breaks as soon as someone swaps
    it (pytest's capture does, then closes it): every later log call would raise
    "I/O operation on closed file" — inside whatever code happened to log.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str | None = None, *, json: bool | None = None) -> None:
    level_name = (level or os.environ.get("RALLY_LOG_LEVEL", "INFO")).upper()
    numeric = logging.getLevelNamesMapping().get(level_name, logging.INFO)
    if json is None:
        json = os.environ.get("RALLY_LOG_FORMAT") == "json" or not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_message_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # aio-pika and aiormq log reconnects at WARNING; keep them, drop their debug chatter
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
