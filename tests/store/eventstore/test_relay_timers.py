"""Timers cancelled by the append that ends what they watch never reach the broker, even
when the relay already holds them (handed over by the fast path, not yet published)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from tests.store.eventstore.test_relay_fast_path import (
    CountingStore,
    Sink,
    ev,
    eventually,
    notice,
    relay_on,
)
from tests.support.fixtures.store import Store, StoreFactory
from workers.store.base import CommitListener, Handoff
from workers.store.codec import utc_now


class Gated(CountingStore):
    """Holds the hand-offs until ``open``, then gives them to the relay all at once."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.held: list[Handoff] = []
        self.listener: CommitListener | None = None

    def attach_relay(self, owner: str, claim_seconds: float, on_commit: CommitListener) -> None:
        self.listener = on_commit
        self.store.attach_relay(owner, claim_seconds, self.held.append)

    def open(self) -> None:
        assert self.listener is not None
        held, self.held = self.held, []
        for handoff in held:  # no await between them: the relay's loop cannot run meanwhile
            self.listener(handoff)


async def test_a_handed_timer_cancelled_before_it_went_out_is_not_published(
    opened: StoreFactory, any_store_url: str
) -> None:
    store = await opened(any_store_url)
    sink = Sink()
    gated = Gated(store)
    relay = await relay_on(gated, sink)
    try:
        watchdog = dataclasses.replace(
            notice("watchdog"), not_before=utc_now() - timedelta(seconds=1), timer_of="task-1"
        )
        # due already: born claimed by the relay and handed over like any other row
        await store.append("task-1", 0, [ev(n=1)], outbox=[watchdog, notice("other")])
        await store.append("task-1", 1, [ev(n=2)], cancel_timers_of=["task-1"])
        assert [len(h.rows) for h in gated.held] == [3, 1]
        assert len(gated.held[1].cancelled) == 1
        gated.open()

        async def out() -> bool:
            return len(sink.messages) >= 3

        await eventually(out, "the two events and the other notice published")
        await relay.flush()
    finally:
        await relay.stop()
    assert "watchdog" not in sink.ids()
    assert "other" in sink.ids()
    assert await store.outbox_pending() == 0
