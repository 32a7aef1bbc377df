"""Who can take a task of a capability, kept as agents and tasks change: pure, no I/O.

Placement used to scan every agent of the fleet for every decision; with an
index its cost follows the candidates of a task's capability instead. For each
capability the index holds the agents that may get new work (live, their stream
not held) — ``able`` — and of those the ones with a free slot — ``free``. The
projection tells it about an agent whenever something placement reads of that
agent changes (its state, its running work, a hold), so the index is never
scanned or rebuilt on the way to a decision; a projection restored wholesale
from a snapshot rebuilds it once.

The free agents of a capability are also kept in placement's order (least loaded
first: ``order_key``), one heap per capability, so picking the best of 5,000 free
agents costs a few heap pops instead of a look at each of them (at 10,000 agents
that scan was nearly all of the allocator's CPU). Entries are never updated in
place: a changed agent gets a new entry and the old one is dropped when it comes
to the top (it no longer equals the agent's key); a heap grown past twice its
live agents is rebuilt. A decision's own placements (not in the view until their
events come back) move agents through ``pick``'s ``key_now`` and ``moved``; the
view's entries those placements passed over go on a shelf and back with
``restore``, so a plan that is never appended leaves the index as it was.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field

Key = tuple[float, int, str]  # (load / capacity, load, agent id): the least is placed on
Shelf = list[tuple[str, Key]]  # (capability, entry) set aside during one decision
COMPACT_SLACK = 64  # a heap may hold this many stale entries beyond 2x its live ones


def order_key(agent_id: str, load: int, capacity: int) -> Key:
    """Placement's order: least loaded by share of capacity, then by count, then by id."""
    return (load / capacity, load, agent_id)


@dataclass(slots=True)
class Membership:
    capabilities: tuple[str, ...]
    free: bool


@dataclass(slots=True)
class CandidateIndex:
    able: dict[str, set[str]] = field(default_factory=dict)
    free: dict[str, set[str]] = field(default_factory=dict)
    _members: dict[str, Membership] = field(default_factory=dict)
    _keys: dict[str, Key] = field(default_factory=dict)  # each free agent's, as of the view
    _heaps: dict[str, list[Key]] = field(default_factory=dict)  # per capability, some stale

    def update(
        self,
        agent_id: str,
        capabilities: Iterable[str],
        *,
        placeable: bool,
        has_slot: bool,
        load: int = 0,
        capacity: int = 1,
    ) -> None:
        """Where ``agent_id`` belongs now: nowhere unless ``placeable`` (live, not held)."""
        before = self._members.get(agent_id)
        caps = tuple(capabilities)
        key = order_key(agent_id, load, capacity) if placeable and has_slot else None
        if placeable and before == Membership(caps, has_slot):
            # the common case (a task came or went, a slot is still free): a new place in
            # the order at most
            if key is not None and self._keys.get(agent_id) != key:
                self._keys[agent_id] = key
                self._push(caps, key, compact=True)
            return
        self._keys.pop(agent_id, None)
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
        if key is not None:
            self._keys[agent_id] = key
            self._push(caps, key, compact=True)

    def able_count(self, capability: str) -> int:
        return len(self.able.get(capability, ()))

    def free_of(self, capability: str) -> set[str]:
        return self.free.get(capability, _EMPTY)

    def capabilities_of(self, agent_id: str) -> tuple[str, ...]:
        member = self._members.get(agent_id)
        return member.capabilities if member is not None else ()

    # ---- placement's order ----
    def pick(
        self,
        capability: str,
        key_now: Callable[[str], Key | None],
        refused: Container[str],
        shelf: Shelf,
    ) -> str | None:
        """The free agent of ``capability`` least in placement's order, not ``refused``.

        ``key_now`` is an agent's key counting this decision's placements (None: full
        now). Entries of the view that this decision moved go on ``shelf``.
        """
        heap = self._heaps.get(capability)
        if heap is None:
            return None
        free = self.free.get(capability, _EMPTY)
        skipped: list[Key] = []
        found = None
        while heap:
            key = heap[0]
            agent_id = key[2]
            if agent_id not in free:
                heapq.heappop(heap)  # gone from the free agents: dropped
                continue
            if key != key_now(agent_id):
                heapq.heappop(heap)
                if key == self._keys.get(agent_id):
                    # the view's, moved by this decision: back after it (it may not append)
                    shelf.append((capability, key))
                continue  # else stale: dropped
            if agent_id in refused:
                skipped.append(heapq.heappop(heap))
                continue
            found = agent_id
            break
        for key in skipped:
            heapq.heappush(heap, key)
        return found

    def moved(self, agent_id: str, key: Key) -> None:
        """This decision placed work on ``agent_id``: its place in the order for the rest of it."""
        self._push(self.capabilities_of(agent_id), key, compact=False)

    def restore(self, shelf: Shelf) -> None:
        """The view's entries a decision set aside, back (its plan may never be appended)."""
        for capability, key in shelf:
            heapq.heappush(self._heaps.setdefault(capability, []), key)
        shelf.clear()

    def _push(self, caps: tuple[str, ...], key: Key, *, compact: bool) -> None:
        for capability in caps:
            heap = self._heaps.setdefault(capability, [])
            heapq.heappush(heap, key)
            live = self.free.get(capability, _EMPTY)
            if compact and len(heap) > 2 * len(live) + COMPACT_SLACK:
                # a sorted list is a heap
                self._heaps[capability] = sorted(self._keys[a] for a in live if a in self._keys)


_EMPTY: set[str] = set()


def _discard(sets: dict[str, set[str]], key: str, agent_id: str) -> None:
    members = sets.get(key)
    if members is not None:
        members.discard(agent_id)
        if not members:
            del sets[key]
