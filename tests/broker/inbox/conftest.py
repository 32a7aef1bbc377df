"""The dead-letter fixtures (archive, `rally dlq` in-process) shared with tests/broker/dlq."""

from __future__ import annotations

from tests.broker.dlq.conftest import broker_settings, dlq_archive, rally

__all__ = ["broker_settings", "dlq_archive", "rally"]
