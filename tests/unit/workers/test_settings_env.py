"""Each RALLY_* variable feeds one setting: the agents' heartbeat is not the AMQP one."""

from __future__ import annotations

from broker.settings import BrokerSettings
from workers.runtime.settings import WorkerSettings


def test_an_agent_heartbeat_of_two_and_a_half_seconds_leaves_the_amqp_heartbeat_alone() -> None:
    env = {"RALLY_HEARTBEAT_S": "2.5"}
    settings = WorkerSettings.from_env(env)
    assert settings.heartbeat_s == 2.5
    assert settings.broker.amqp_heartbeat_s == BrokerSettings().amqp_heartbeat_s


def test_the_amqp_heartbeat_has_its_own_variable() -> None:
    env = {"RALLY_AMQP_HEARTBEAT_S": "3", "RALLY_HEARTBEAT_S": "1"}
    assert BrokerSettings.from_env(env).amqp_heartbeat_s == 3
    assert WorkerSettings.from_env(env).heartbeat_s == 1.0
