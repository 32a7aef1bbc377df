"""RALLY_AMQP_URL as a node list: both spellings, and a clear error for anything else."""

from __future__ import annotations

import pytest

from broker.connection import BrokerConnection
from broker.nodes import BrokerConfigError, parse_nodes
from broker.placement import existing_placement
from broker.settings import BrokerSettings
from broker.topology import Topology


@pytest.mark.parametrize(
    "url",
    [
        "amqp://u:p@h1:5672,h2:5673,h3:5674/v",
        "amqp://u:p@h1:5672/v,amqp://u:p@h2:5673/v,amqp://u:p@h3:5674/v",
        " amqp://u:p@h1:5672/v , amqp://u:p@h2:5673/v ,amqp://u:p@h3:5674/v ",
    ],
)
def test_both_spellings_name_the_same_nodes(url: str) -> None:
    settings = BrokerSettings.from_env({"RALLY_AMQP_URL": url})
    assert settings.amqp_nodes[:2] == ("amqp://u:p@h1:5672/v", "amqp://u:p@h2:5673/v")
    assert len(settings.amqp_nodes) == 3
    assert settings.amqp_url == "amqp://u:p@h1:5672,h2:5673,h3:5674/v"


def test_a_single_url_is_kept_as_written() -> None:
    url = "amqp://guest:guest@127.0.0.1:5672/?heartbeat=2"
    settings = BrokerSettings(amqp_url=url)
    assert settings.amqp_url == url
    assert settings.amqp_nodes == (url,)


def test_options_and_vhost_apply_to_every_node() -> None:
    nodes = parse_nodes("amqp://u:p@[::1]:5672,h2/my%2Fvhost?reconnect_interval=0.5").urls()
    assert nodes == (
        "amqp://u:p@[::1]:5672/my%2Fvhost?reconnect_interval=0.5",
        "amqp://u:p@h2/my%2Fvhost?reconnect_interval=0.5",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("h1:5672,h2:5672", "is not a URL"),
        ("amqp://u:p@h1/v,h2,h3", "go after the last node"),
        ("amqp://u:p@h1,h2,amqp://u:p@h3", "mixes full URLs"),
        ("amqp://u:p@h1/,amqp://u:q@h2/", "different credentials"),
        ("amqp://u:p@h1/a,amqp://u:p@h2/b", "different vhosts"),
        ("amqp://u:p@h1,,h2/", "empty node"),
        ("amqp://u:p@h1,h2:x/", "not a number"),
        ("amqp://u:p@h1,u:p@h2/", "write them once"),
        ("amqp://u:p@h1;h2/", "not host or host:port"),
        ("amqp://u:p@h1,h1/", "listed twice"),
        ("http://h1/", "scheme"),
        ("", "empty"),
    ],
)
def test_anything_else_is_a_clear_error_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(BrokerConfigError, match=problem) as caught:
        BrokerSettings.from_env({"RALLY_AMQP_URL": url})
    assert "RALLY_AMQP_URL" in str(caught.value)
    assert ":p@" not in str(caught.value).replace("user:pass@", "")


def test_quorum_size_defaults_to_the_nodes_named() -> None:
    one = BrokerSettings()
    three = BrokerSettings(amqp_url="amqp://g:g@a,b,c/")
    assert one.quorum_initial_group_size is None  # one node: no argument, as before
    assert three.quorum_initial_group_size == 3
    assert BrokerSettings.from_env({"RALLY_QUORUM_SIZE": "5"}).quorum_initial_group_size == 5
    with pytest.raises(BrokerConfigError, match="RALLY_QUORUM_SIZE"):
        BrokerSettings.from_env({"RALLY_QUORUM_SIZE": "three"})


def test_a_cluster_topology_places_new_quorum_queues() -> None:
    plain = BrokerConnection(BrokerSettings(), role="t").topology
    clustered = BrokerConnection(BrokerSettings(amqp_url="amqp://g:g@a,b,c/"), role="t").topology
    spec = plain.work_queue("tasks")
    assert "x-queue-leader-locator" not in plain.queue_arguments(spec, 10)
    args = clustered.queue_arguments(spec, 10)
    assert args["x-quorum-initial-group-size"] == 3
    assert args["x-queue-leader-locator"] == "balanced"


@pytest.mark.parametrize(
    ("error", "found"),
    [
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-leader-locator' for queue 'q' in "
            "vhost '/': received the value 'balanced' of type 'longstr' but current is none",
            ("x-queue-leader-locator", None),
        ),
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-quorum-initial-group-size' for queue 'q' "
            "in vhost '/': received none but current is the value '3' of type 'byte'",
            ("x-quorum-initial-group-size", 3),
        ),
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-quorum-initial-group-size' for queue 'q' "
            "in vhost '/': received '1' but current is '3'",
            ("x-quorum-initial-group-size", 3),
        ),
        (
            "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'q' in vhost "
            "'/': received '5' but current is '10'",
            None,
        ),
    ],
)
def test_placement_differences_are_read_from_the_brokers_refusal(
    error: str, found: tuple[str, object] | None
) -> None:
    assert existing_placement(error) == found


def test_a_provisioned_agent_is_given_every_node() -> None:
    from workers.cli.provision import url_for

    url = url_for("amqp://ops:s@h1:5672,h2:5673/?heartbeat=5", user="a1", password="p w", vhost="v")
    assert url == "amqp://a1:p%20w@h1:5672,h2:5673/v?heartbeat=5"
    assert BrokerSettings(amqp_url=url).amqp_nodes[1] == "amqp://a1:p%20w@h2:5673/v?heartbeat=5"


def test_inboxes_are_classic_on_one_node_and_quorum_on_a_cluster() -> None:
    one = BrokerSettings.from_env({"RALLY_AMQP_URL": "amqp://u:p@h1:5672/"})
    three = BrokerSettings.from_env({"RALLY_AMQP_URL": "amqp://u:p@h1:5672,h2:5672,h3:5672/"})
    assert one.inbox_queue_type == "classic"  # 10,000 inboxes on a small broker
    assert three.inbox_queue_type == "quorum"  # an inbox outlives the loss of its node
    forced = BrokerSettings.from_env(
        {"RALLY_AMQP_URL": "amqp://u:p@h1:5672,h2:5672/", "RALLY_INBOX_TYPE": "classic"}
    )
    assert forced.inbox_queue_type == "classic"
    spec = Topology("ns", inbox_type="quorum").inbox_queue("a1")
    assert (spec.queue_type, spec.earlier_type) == ("quorum", "classic")
