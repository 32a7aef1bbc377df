"""Which agents this registry owns, and what becomes of a command for someone else's.

Shard ``k`` of ``n`` (``RALLY_REGISTRY_SHARD`` / ``RALLY_REGISTRY_SHARDS``) owns the agents
whose slot (contracts/shards.py) is ``k`` modulo ``n``: it alone folds, sweeps and declares
them lost, and its snapshot holds only them. Agents send each registry command under their
slot's routing key, so it reaches the owner's queue directly. What reaches a shard for an
agent it does not own — unslotted keys, which only shard 0 binds (an agent of an earlier
release, or one that does not hash), or what was left in a queue when the shard count
changed — is forwarded under the slotted key (broker/forward.py), acting for its first
sender. A copy already forwarded :data:`MAX_FORWARDS` times is dead-lettered instead
(``wrong_shard``): shards started with different counts disagree on who owns it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import structlog

from broker.errors import Reject
from broker.forward import LeftQueue, forward, forwards_of
from broker.publisher import Publisher
from broker.router import Incoming
from broker.topology import Topology
from contracts.shards import SLOTS, registry_routing_key, slot_of, slots_of_shard
from workers.runtime.settings import WorkerSettings

log = structlog.get_logger(__name__)

SNAPSHOT = "registry"  # one shard: the name every release before sharding used
MAX_FORWARDS = 2  # one hop is the rule; a second covers a queue left over by a count change
WRONG_SHARD = "wrong_shard"  # the dead-letter reason of a copy no shard will take


@functools.lru_cache(maxsize=1 << 16)
def _slot(agent_id: str) -> int:
    # asked for every agent on every sweep, twice a second: FNV over the id once per agent
    return slot_of(agent_id)


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``: the agents it owns and the names it uses."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        slots_of_shard(self.index, self.count)  # raises ValueError on a shard out of range

    @classmethod
    def of(cls, settings: WorkerSettings) -> Shard:
        return cls(settings.registry_shard, settings.registry_shards)

    @property
    def sharded(self) -> bool:
        return self.count > 1

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def snapshot_name(self) -> str:
        """``registry`` for one shard (existing deployments read theirs), else per shard."""
        return f"{SNAPSHOT}.{self.index}of{self.count}" if self.sharded else SNAPSHOT

    def owns(self, agent_id: str) -> bool:
        return self.count == 1 or _slot(agent_id) % self.count == self.index


@dataclass(frozen=True, slots=True)
class Forward:
    """The decision for a command of another shard's agent: re-publish it under this key."""

    routing_key: str


def route(shard: Shard, type_name: str, agent_id: str, forwards: int) -> Forward | None:
    """None: handle it here. Else where to forward it; raises Reject past the hop limit."""
    if shard.owns(agent_id):
        return None
    if forwards >= MAX_FORWARDS:
        raise Reject(
            f"{type_name} for agent {agent_id!r} (slot {_slot(agent_id)}) reached registry "
            f"shard {shard.label} after {forwards} forwards: registry shards disagree on the "
            "shard count (run every shard with the same RALLY_REGISTRY_SHARDS)",
            reason=WRONG_SHARD,
        )
    return Forward(registry_routing_key(type_name, agent_id))


class Forwarder:
    """Forwards what this shard does not own; the registry's handlers call it first."""

    def __init__(self, shard: Shard, publisher: Publisher, topology: Topology) -> None:
        self.shard = shard
        self.publisher = publisher
        self.exchange = topology.commands
        self.forwarded = 0

    async def __call__(self, incoming: Incoming[Any], agent_id: str) -> bool:
        """True when forwarded (the caller is done with it), False: ours to handle."""
        decision = route(
            self.shard, incoming.envelope.type, agent_id, forwards_of(incoming.headers)
        )
        if decision is None:
            return False
        await forward(
            self.publisher, incoming, exchange=self.exchange, routing_key=decision.routing_key
        )
        self.forwarded += 1
        log.debug("registry.forwarded", agent_id=agent_id, routing_key=decision.routing_key)
        return True


def left_queues(topology: Topology, shards: int) -> list[LeftQueue]:
    """The queues of shards ``shards``..63: run under a larger count, by nobody now."""
    every_slot = tuple((topology.commands, f"registry.*.{s}") for s in range(SLOTS))
    return [
        LeftQueue(topology.registry_queue_name(k), every_slot) for k in range(max(shards, 1), SLOTS)
    ]
