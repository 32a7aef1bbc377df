"""Prometheus expositions, parsed: sample values by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from broker.metrics import REGISTRY

Labels = dict[str, str]


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
