"""Which registry shard hears an agent: a stable slot of its id, carried in the routing key.

An agent's registry commands (``RegisterAgent``, ``Heartbeat``, ``DeregisterAgent``) go to
``ns.commands`` with the routing key ``registry.<Type>.<slot>``, where ``slot`` is
:func:`slot_of` its agent id: FNV-1a (32 bit) of the id's UTF-8 bytes, modulo
:data:`SLOTS`. The slot count is part of the protocol and never changes; how many registry
shards share the slots is the operator's choice (``RALLY_REGISTRY_SHARDS``), so an agent
never needs to know it. Shard ``k`` of ``n`` owns the slots ``s`` with ``s % n == k``.

FNV-1a is a few lines in any language (docs/protocol.md gives them), unlike a hash a
runtime may not ship. The vectors in ``contracts/vectors/slots.json`` pin it for every SDK.
"""

from __future__ import annotations

SLOTS = 64
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def slot_of(agent_id: str) -> int:
    """The agent's slot, 0..SLOTS-1: the same in every process, release and language."""
    return fnv1a_32(agent_id.encode("utf-8")) % SLOTS


def shard_of(agent_id: str, shards: int) -> int:
    """The shard (0..shards-1) that owns the agent when ``shards`` registry shards run."""
    return slot_of(agent_id) % shards


def slots_of_shard(shard: int, shards: int) -> tuple[int, ...]:
    """The slots shard ``shard`` of ``shards`` owns."""
    if not 0 < shards <= SLOTS:
        raise ValueError(f"registry shards must be 1..{SLOTS}, not {shards}")
    if not 0 <= shard < shards:
        raise ValueError(f"registry shard must be 0..{shards - 1}, not {shard}")
    return tuple(s for s in range(SLOTS) if s % shards == shard)


def registry_routing_key(type_name: str, agent_id: str) -> str:
    """``registry.<Type>.<slot>``: where an agent's registry command is published."""
    return f"registry.{type_name}.{slot_of(agent_id)}"
