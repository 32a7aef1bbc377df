"""Logs go to stderr, never to the program's stdout, even if the program set nothing up.

structlog's default prints to stdout, which would mix the SDK's logs into an
agent's or a script's output; a program that configured structlog keeps its
own set-up.
"""

from __future__ import annotations

import structlog

from broker.logs import configure_logging


def ensure_logging() -> None:
    if not structlog.is_configured():
        configure_logging()
