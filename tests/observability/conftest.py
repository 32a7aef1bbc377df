"""Fixtures for the observability tests: worker settings on a store file, a metrics reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.metrics import REGISTRY
from broker.settings import BrokerSettings
from workers.runtime.settings import WorkerSettings

Labels = dict[str, str]


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


class Scrape:
    """One exposition, parsed: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, Labels, float]] = [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}

    def find(self, name: str, **labels: str) -> list[tuple[Labels, float]]:
        return [
            (have, value)
            for sample, have, value in self.samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum over the series that match (0 when none does)."""
        return sum(value for _, value in self.find(name, **labels))


def local_scrape() -> Scrape:
    """This process's registry, read directly (what /metrics would serve)."""
    from prometheus_client import generate_latest

    return Scrape(generate_latest(REGISTRY).decode())
