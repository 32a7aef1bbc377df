"""Figures from repeated runs: the median with min and max, and latency percentiles.

Pure functions, no I/O: the bench measures, these summarise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spread:
    """One figure over several runs: the median is the figure, min and max its spread."""

    median: float
    min: float
    max: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one run")
        return cls(median(values), min(values), max(values), tuple(values))


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("the median of nothing is undefined")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank: always a value that was measured."""
    if not values:
        raise ValueError("a percentile of nothing is undefined")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def rate(count: int, seconds: float) -> float:
    """Per second; zero when nothing was timed rather than a division error."""
    return count / seconds if seconds > 0 else 0.0
