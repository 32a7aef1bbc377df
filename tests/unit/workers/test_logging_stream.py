"""Logging survives its stream being swapped and closed (as pytest's capture does)."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from broker.logs import configure_logging


def test_a_log_line_after_the_configured_stream_closed_goes_to_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("INFO", json=True)
    first.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    structlog.get_logger("t").warning("still.here")  # raised "I/O operation on closed file"
    assert "still.here" in now.getvalue()
