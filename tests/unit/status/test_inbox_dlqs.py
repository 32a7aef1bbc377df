"""`rally status` and the dashboard look at the same queues, the inboxes' shared DLQ included.

Inboxes of this release dead-letter to ``ns.inboxes.dlq``; one of an earlier release has
a DLQ of its own (``ns.inbox.<id>.dlq``), which both still look at.
"""

from __future__ import annotations

from broker.topology import Topology
from workers.dashboard.data import queue_kind
from workers.queue_signals import FLEET_INBOXES, fleet_queue_names


def test_the_shared_inbox_dlq_and_an_older_inbox_own_are_looked_at() -> None:
    names = fleet_queue_names(Topology("ns"), ["a"], 1)
    assert {"ns.inboxes.dlq", "ns.inbox.a", "ns.inbox.a.dlq", "ns.clients.dlq"} <= set(names)
    assert queue_kind(Topology("ns"), "ns.inboxes.dlq") == "dlq"


def test_a_large_fleet_costs_a_bounded_number_of_looks() -> None:
    names = fleet_queue_names(Topology("ns"), (f"a{i}" for i in range(10_000)), 1)
    inboxes = [n for n in names if n.startswith("ns.inbox.") and not n.endswith(".dlq")]
    assert len(inboxes) == FLEET_INBOXES
