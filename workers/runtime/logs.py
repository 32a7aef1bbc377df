"""Logging for read-only commands: to stderr, warnings only unless RALLY_LOG_LEVEL says more,
so that stdout carries only the answer (``--json`` output stays parseable)."""

from __future__ import annotations

import os

from broker.logs import configure_logging


def quiet_logs() -> None:
    configure_logging(os.environ.get("RALLY_LOG_LEVEL", "WARNING"))
