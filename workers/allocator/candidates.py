"""Who can take a task of a capability, kept as agents and tasks change: pure, no I/O.

Placement used to scan every agent of the fleet for every decision; with an
index its cost follows the candidates of a task's capability instead. For each
capability the index holds the agents that may get new work (live, their stream
not held) — ``able`` — and of those the ones with a free slot — ``free``. The
projection tells it about an agent whenever something placement reads of that
agent changes (its state, its running work, a hold), so the index is never
scanned or rebuilt on the way to a decision; a projection restored wholesale
from a snapshot rebuilds it once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Membership:
    capabilities: tuple[str, ...]
    free: bool


@dataclass(slots=True)
class CandidateIndex:
    able: dict[str, set[str]] = field(default_factory=dict)
    free: dict[str, set[str]] = field(default_factory=dict)
    _members: dict[str, Membership] = field(default_factory=dict)

    def update(
        self, agent_id: str, capabilities: Iterable[str], *, placeable: bool, has_slot: bool
    ) -> None:
        """Where ``agent_id`` belongs now: nowhere unless ``placeable`` (live, not held)."""
        before = self._members.get(agent_id)
        caps = tuple(capabilities)
        if placeable and before == Membership(caps, has_slot):
            return  # the common case (a task came or went, a slot is still free): nothing
        if before is not None:
            del self._members[agent_id]
            for capability in before.capabilities:
                _discard(self.able, capability, agent_id)
                if before.free:
                    _discard(self.free, capability, agent_id)
        if not placeable:
            return
        self._members[agent_id] = Membership(caps, has_slot)
        for capability in caps:
            self.able.setdefault(capability, set()).add(agent_id)
            if has_slot:
                self.free.setdefault(capability, set()).add(agent_id)

    def able_count(self, capability: str) -> int:
        return len(self.able.get(capability, ()))

    def free_of(self, capability: str) -> set[str]:
        return self.free.get(capability, _EMPTY)


_EMPTY: set[str] = set()


def _discard(sets: dict[str, set[str]], key: str, agent_id: str) -> None:
    members = sets.get(key)
    if members is not None:
        members.discard(agent_id)
        if not members:
            del sets[key]
