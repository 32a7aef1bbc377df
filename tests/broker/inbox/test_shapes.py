"""Which shapes an inbox may already exist in, tried in order at declare. Pure: no broker."""

from __future__ import annotations

from broker.declare import _older_arguments
from broker.topology import Topology


def test_a_new_inbox_dead_letters_to_the_shared_dlq_and_is_classic_version_1() -> None:
    topology = Topology("ns")
    spec = topology.inbox_queue("a-1")
    args = topology.queue_arguments(spec, 10)
    assert args["x-dead-letter-routing-key"] == "ns.inboxes.dlq" == spec.dlq
    assert (args["x-queue-type"], args["x-queue-version"]) == ("classic", 1)
    assert topology.dead_letter_key(spec) == "ns.inboxes.dlq"


def test_the_last_releases_inbox_is_tried_first_and_no_shape_twice() -> None:
    topology = Topology("ns")
    spec = topology.inbox_queue("a-1")
    older = _older_arguments(topology, spec, 10)
    last = older[0]  # the last release: classic version 2, a DLQ of its own
    assert (last["x-queue-version"], last["x-dead-letter-routing-key"]) == (2, "ns.inbox.a-1")
    shapes = [topology.queue_arguments(spec, 10), *older]
    assert len(shapes) == len({tuple(sorted(a.items())) for a in shapes}) == 6
    assert any(a["x-queue-type"] == "quorum" for a in older)  # the release before


def test_on_a_cluster_the_inbox_is_quorum_and_a_one_node_inbox_is_still_found() -> None:
    topology = Topology("ns", inbox_type="quorum")
    spec = topology.inbox_queue("a-1")
    assert topology.queue_arguments(spec, 10)["x-queue-type"] == "quorum"
    older = _older_arguments(topology, spec, 10)
    assert {"x-queue-type": "classic", "x-queue-version": 1} in [
        {k: a[k] for k in ("x-queue-type", "x-queue-version") if k in a} for a in older
    ]


def test_work_queues_have_no_other_shape() -> None:
    topology = Topology("ns")
    assert _older_arguments(topology, topology.work_queue("tasks"), 10) == []
