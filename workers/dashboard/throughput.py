"""Tasks finished per second over the last few minutes: one counter per second, pruned."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

WINDOW_S = 300


@dataclass
class Throughput:
    """Counts per whole second (Unix time) of when tasks ended, as the store recorded it."""

    window_s: int = WINDOW_S
    buckets: dict[int, int] = field(default_factory=dict)
    latest: int = 0  # the newest second seen: pruning follows the history, not a clock

    def add(self, at: datetime, count: int = 1) -> None:
        second = math.floor(at.timestamp())
        if second <= self.latest - self.window_s:
            return  # older than anything the chart can show (catching up on old history)
        self.buckets[second] = self.buckets.get(second, 0) + count
        if second > self.latest:
            self.latest = second
            # a little slack past the window, so a clock slightly behind the store still fills it
            horizon = second - 2 * self.window_s
            if len(self.buckets) > 2 * self.window_s:
                self.buckets = {s: c for s, c in self.buckets.items() if s > horizon}

    def series(self, now: datetime, window_s: int | None = None) -> tuple[int, list[int]]:
        """(first second, counts per second up to and including ``now``'s second)."""
        span = min(window_s or self.window_s, self.window_s)
        end = math.floor(now.timestamp())
        start = end - span + 1
        return start, [self.buckets.get(s, 0) for s in range(start, end + 1)]

    def rate(self, now: datetime, over_s: int = 10) -> float:
        """Tasks per second over the last ``over_s`` whole seconds before ``now``'s second."""
        end = math.floor(now.timestamp())
        return sum(self.buckets.get(s, 0) for s in range(end - over_s, end)) / over_s
