"""What a bench run measures and how hard: every knob of `rally bench`, with its default."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from broker.settings import DEFAULT_AMQP_URL
from workers.bench.celery_peer import DEFAULT_POOL

PARTS = ("floor", "rallypoint", "celery", "scaling", "store", "memory")
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class BenchOptions:
    amqp_url: str = DEFAULT_AMQP_URL
    tasks: int = 10_000
    runs: int = 3
    window: int = 1_000  # rallypoint tasks in flight, saturated
    sequential: int = 200  # rallypoint tasks one at a time, for p50_ms_one_in_flight
    warmup: int = 200
    replicas: int = 1  # of each worker, for the rallypoint figure
    agents: int = 2  # agent processes, one SDK agent each
    agent_capacity: int = 256
    floor_window: int = 500
    celery_pool: str = DEFAULT_POOL
    celery_concurrency: int | None = None
    scaling: tuple[int, ...] = (1, 2, 4)
    store_url: str | None = None  # the rallypoint fleet's store; None: fresh SQLite
    pg_url: str | None = DEFAULT_PG_URL  # the store bench's PostgreSQL; None: SQLite only
    skip: frozenset[str] = field(default_factory=frozenset)
    quick: bool = False
    out: Path = Path("bench") / "results"
    scratch: Path = Path("var") / "bench"
    profile: Path | None = None  # py-spy profiles of the fleet during the first rallypoint run
    timeout_s: float = 900.0  # per run of any part

    def __post_init__(self) -> None:
        unknown = sorted(self.skip - set(PARTS))
        if unknown:
            raise ValueError(f"cannot skip {', '.join(unknown)}: choose from {', '.join(PARTS)}")
        for name in ("tasks", "runs", "window", "replicas", "agents", "agent_capacity"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.scaling or min(self.scaling) < 1:
            raise ValueError("--scaling needs replica counts of at least 1, e.g. 1,2,4")

    def runs_part(self, part: str) -> bool:
        return part not in self.skip

    def quickened(self) -> BenchOptions:
        """Small N and one run: the whole bench in well under a minute."""
        return replace(
            self,
            tasks=min(self.tasks, 300),
            runs=1,
            window=min(self.window, 300),
            sequential=min(self.sequential, 20),
            warmup=min(self.warmup, 20),
            floor_window=min(self.floor_window, 300),
            quick=True,
        )
