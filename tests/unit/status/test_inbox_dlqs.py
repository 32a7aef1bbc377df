"""`rally status` and the dashboard look at the DLQ every agent inbox shares.

Inboxes of this release dead-letter to ``ns.inboxes.dlq``; one of an earlier release has
a DLQ of its own (``ns.inbox.<id>.dlq``), which both still look at.
"""

from __future__ import annotations

from broker.topology import Topology
from workers.cli.status_cmd import _queue_names
from workers.dashboard.data import queue_kind, queue_names


def test_rally_status_looks_at_the_shared_inbox_dlq_and_an_older_inbox_own() -> None:
    agents = [{"agent_id": "a", "status": "idle"}, {"agent_id": "b", "status": "left"}]
    names = _queue_names(Topology("ns"), agents, 1)
    assert {"ns.inboxes.dlq", "ns.inbox.a", "ns.inbox.a.dlq", "ns.clients.dlq"} <= set(names)
    assert "ns.inbox.b" not in names  # an agent that left is not looked at


def test_the_dashboard_lists_the_shared_inbox_dlq_as_a_dlq() -> None:
    topology = Topology("ns")
    names = queue_names(topology, [])
    assert {"ns.inboxes.dlq", "ns.clients.dlq"} <= set(names)
    assert queue_kind(topology, "ns.inboxes.dlq") == "dlq"
