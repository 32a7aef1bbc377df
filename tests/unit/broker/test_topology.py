"""What the topology declares, asked without a broker."""

from __future__ import annotations

import pytest

from broker.topology import Topology, event_subscribed, topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("task.TaskReady", "task.TaskReady", True),
        ("task.TaskReady", "task.TaskStarted", False),
        ("agent.#", "agent.AgentJoined", True),
        ("agent.#", "agent", True),
        ("agent.#", "resource.X", False),
        ("*.x", "a.x", True),
        ("*.x", "a.b.x", False),
        ("#", "anything.at.all", True),
        ("a.#.z", "a.b.c.z", True),
    ],
)
def test_topic_matching(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_events_nobody_subscribes_to_are_known() -> None:
    assert event_subscribed("task", "TaskSubmitted")
    assert event_subscribed("agent", "AgentJoined")
    assert event_subscribed("resource", "ResourceDefined")
    assert not event_subscribed("task", "TaskAssigned")
    assert not event_subscribed("task", "TaskStarted")
    assert not event_subscribed("taskkey", "TaskKeyClaimed")


def test_allocator_queue_binds_every_subscribed_event() -> None:
    topology = Topology("ns")
    spec = topology.allocator_queue()
    assert spec.name == "ns.q.allocator"
    assert spec.single_active
    # heartbeats are the registry's alone; an earlier release's binding is taken away
    assert ("ns.commands", "registry.Heartbeat") not in spec.bindings
    assert spec.retired == (("ns.commands", "registry.Heartbeat"),)
    assert ("ns.events", "task.TaskReady") in spec.bindings


def test_dashboard_tap_is_private_and_bounded() -> None:
    spec = Topology("ns").dashboard_tap_queue("abc")
    assert spec.name == "ns.dashboard.abc"
    assert spec.bindings == (("ns.commands", "registry.Heartbeat.#"),)  # slotted or not
    args = Topology("ns").queue_arguments(spec, delivery_limit=5)
    assert args["x-overflow"] == "drop-head"
    assert "x-queue-type" not in args
