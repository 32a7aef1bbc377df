"""Fixtures for the observability tests: worker settings on a store file, a metrics reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.settings import BrokerSettings
from workers.runtime.settings import WorkerSettings


@pytest.fixture
def sdk_settings(broker_settings: BrokerSettings) -> BrokerSettings:
    return broker_settings.model_copy(
        update={"amqp_url": broker_settings.amqp_url.rstrip("/") + "/?reconnect_interval=0.3"}
    )


@pytest.fixture
def worker_settings(broker_settings: BrokerSettings, tmp_path: Path) -> WorkerSettings:
    return WorkerSettings(
        broker=broker_settings,
        store_url=f"sqlite:///{tmp_path}/rally.db",
        sweep_interval_s=0.1,
        rejection_cooldown_s=0.2,
    )
