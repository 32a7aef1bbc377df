"""Registry shards without a broker: who owns an agent, the names a shard uses, its settings,
and what becomes of a command for another shard's agent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from broker.errors import Reject
from broker.topology import Topology
from contracts.shards import SLOTS, slot_of
from workers.cli.worker_cmd import commands
from workers.registry.shards import (
    MAX_FORWARDS,
    WRONG_SHARD,
    Forward,
    Shard,
    left_queues,
    route,
)
from workers.registry.state import Agent
from workers.runtime.metrics import registry_samples
from workers.runtime.settings import WorkerSettings

IDS = [f"agent-{i}" for i in range(500)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 64])
def test_every_agent_is_owned_by_exactly_one_shard(count: int) -> None:
    shards = [Shard(k, count) for k in range(count)]
    for agent_id in IDS:
        owners = [s.index for s in shards if s.owns(agent_id)]
        assert owners == [slot_of(agent_id) % count]


def test_two_shards_each_own_some_of_a_fleet() -> None:
    owned = [sum(Shard(k, 2).owns(a) for a in IDS) for k in (0, 1)]
    assert sum(owned) == len(IDS)
    assert min(owned) > len(IDS) // 4  # the hash spreads them


def test_one_shard_keeps_the_snapshot_name_of_every_earlier_release() -> None:
    assert Shard().snapshot_name == "registry"
    assert Shard(0, 1).snapshot_name == "registry"
    names = {Shard(k, 4).snapshot_name for k in range(4)}
    assert names == {"registry.0of4", "registry.1of4", "registry.2of4", "registry.3of4"}
    assert Shard(1, 2).snapshot_name != Shard(1, 4).snapshot_name  # counts never share one


@pytest.mark.parametrize(("shard", "count"), [(2, 2), (-1, 2), (0, 0), (0, SLOTS + 1)])
def test_a_shard_out_of_range_is_refused(shard: int, count: int) -> None:
    with pytest.raises(ValueError, match="registry shard"):
        Shard(shard, count)


def test_settings_default_to_one_shard() -> None:
    settings = WorkerSettings.from_env({})
    assert (settings.registry_shards, settings.registry_shard) == (1, 0)
    assert Shard.of(settings) == Shard(0, 1)


def test_settings_read_the_shard_and_the_count() -> None:
    env = {"RALLY_REGISTRY_SHARDS": "4", "RALLY_REGISTRY_SHARD": "3"}
    assert Shard.of(WorkerSettings.from_env(env)) == Shard(3, 4)
    assert Shard.of(WorkerSettings.from_env(env, registry_shard=1)) == Shard(1, 4)  # --shard


def test_a_shard_not_below_the_count_is_a_clear_error() -> None:
    env = {"RALLY_REGISTRY_SHARDS": "2", "RALLY_REGISTRY_SHARD": "2"}
    with pytest.raises(ValueError, match=r"RALLY_REGISTRY_SHARD=2 .* must be 0\.\.1"):
        WorkerSettings.from_env(env)


@pytest.mark.parametrize("count", ["0", "65", "-1"])
def test_a_count_outside_one_to_64_is_refused(count: str) -> None:
    with pytest.raises(ValueError, match="registry_shards"):
        WorkerSettings.from_env({"RALLY_REGISTRY_SHARDS": count})


def _of(shard: Shard, owned: bool) -> str:
    return next(a for a in IDS if shard.owns(a) == owned)


def test_an_own_agents_command_is_handled_here() -> None:
    shard = Shard(0, 2)
    assert route(shard, "Heartbeat", _of(shard, True), 0) is None
    assert route(Shard(), "Heartbeat", "anyone", 0) is None  # one shard owns everyone


def test_another_shards_agent_is_forwarded_under_its_slotted_key() -> None:
    shard = Shard(0, 2)
    other = _of(shard, False)
    assert route(shard, "RegisterAgent", other, 0) == Forward(
        f"registry.RegisterAgent.{slot_of(other)}"
    )
    assert route(shard, "Heartbeat", other, MAX_FORWARDS - 1) == Forward(
        f"registry.Heartbeat.{slot_of(other)}"
    )


def test_a_copy_forwarded_too_often_is_dead_lettered_as_wrong_shard() -> None:
    shard = Shard(1, 3)
    with pytest.raises(Reject) as refused:
        route(shard, "Heartbeat", _of(shard, False), MAX_FORWARDS)
    assert refused.value.reason == WRONG_SHARD
    assert "RALLY_REGISTRY_SHARDS" in refused.value.detail


def test_the_queues_no_shard_runs_are_those_above_the_count() -> None:
    topology = Topology(namespace="ns")
    left = left_queues(topology, 2)
    assert [q.name for q in left] == [f"ns.q.registry.{k}" for k in range(2, SLOTS)]
    assert {key for _, key in left[0].bindings} == {f"registry.*.{s}" for s in range(SLOTS)}
    assert left_queues(topology, 1)[0].name == "ns.q.registry.1"
    assert left_queues(topology, SLOTS) == []


@dataclass
class _Registry:
    shard: Shard
    agents: Mapping[str, Agent] = field(default_factory=dict)
    replica: str = "0"
    active: bool = True

    def owns(self, agent_id: str) -> bool:
        return self.shard.owns(agent_id)


def test_rally_agents_counts_a_shards_own_agents_so_shards_sum_to_the_fleet() -> None:
    everyone = {a: Agent(a, status="live") for a in IDS[:40]}
    totals = []
    for k in range(3):
        samples = list(registry_samples(_Registry(Shard(k, 3), everyone)))
        live = [value for name, labels, value in samples if labels[-1] == "live"]
        assert all(name == "rally_agents" for name, _, _ in samples)
        totals.append(live[0])
    assert sum(totals) == 40
    assert all(t < 40 for t in totals)


def test_rally_worker_runs_each_registry_shard_with_its_replicas() -> None:
    plan = commands("registry", 2, None, shards=3)
    shards = [c[c.index("--shard") + 1] for c in plan]
    assert shards == ["0", "0", "1", "1", "2", "2"]
    assert [c[c.index("--replica") + 1] for c in plan] == ["0", "1"] * 3
    every = commands("all", 1, None, shards=2)
    assert [c[c.index("--worker") + 1] for c in every] == [
        "registry",
        "registry",
        "tasks",
        "allocator",
    ]
    assert all("--shard" not in c for c in commands("all", 2))  # one shard: as before
