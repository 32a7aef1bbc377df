"""A large view is saved less often: a snapshot's cost follows the view, so its interval does."""

from __future__ import annotations

from typing import Any

from workers.allocator import follow
from workers.allocator.follow import ViewKeeper
from workers.allocator.projection import AgentView, Projection
from workers.registry.state import Agent
from workers.runtime.metrics import PlacementMetrics


def _keeper(agents: int) -> ViewKeeper:
    view = Projection()
    view.agents = {f"a{i}": AgentView(Agent(f"a{i}")) for i in range(agents)}
    no_store: Any = None  # snapshot_due reads only the view and the time
    return ViewKeeper(no_store, view, PlacementMetrics("0"), replica="0")


async def test_a_small_view_is_saved_every_snapshot_every_events() -> None:
    keeper = _keeper(10)
    keeper._saved_time = 1e12  # SNAPSHOT_S not reached
    keeper.view.position = follow.SNAPSHOT_EVERY - 1
    assert not keeper.snapshot_due()
    keeper.view.position = follow.SNAPSHOT_EVERY
    assert keeper.snapshot_due()


async def test_a_large_view_waits_for_events_in_proportion_to_its_entries() -> None:
    keeper = _keeper(10_000)
    keeper._saved_time = 1e12
    keeper.view.position = follow.SNAPSHOT_EVERY
    # saving 10,000 agents every 5,000 events cost more than folding them
    assert not keeper.snapshot_due()
    keeper.view.position = follow.SNAPSHOT_PER_ENTRY * 10_000
    assert keeper.snapshot_due()


async def test_time_still_bounds_the_interval() -> None:
    keeper = _keeper(10_000)
    keeper._saved_time = -1e12  # SNAPSHOT_S long past
    keeper.view.position = 1
    assert keeper.snapshot_due()
