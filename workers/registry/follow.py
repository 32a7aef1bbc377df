"""The registry's agents, folded in memory from a snapshot plus the tail of ``agent-*``.

Start-up loads the snapshot ``registry`` (every agent's fold and the position it
reflects) and folds only the agent records after it. Each later ``catch_up``
(the sweeper's, twice a second, on every replica, active or standby) reads from
the position it reached before: the store's head as it was when the read
began, not the last agent record, so a quiet fleet does not re-scan every task
event since its last agent event. Positions become visible in commit order (both
adapters), so nothing at or below that head can appear later.

The store reads one category with a prefix filter over the position range
(``read_all(stream_prefix=...)``): the cost of a catch-up follows the events
written since the last one (all categories), not the history. A per-category
index in the store would make it follow the agent events alone.

A registry shard (workers/registry/shards.py) follows its own agents only (``owns``) and
keeps them in a snapshot of its own name: the records of other shards' agents are skipped
unread, so its memory, sweeps and snapshots follow its share of the fleet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from workers.registry.state import STREAM_PREFIX, Agent, agent_of, evolve, fold, stream_of
from workers.runtime import snapshots
from workers.runtime.messages import load_event
from workers.store.base import EventStore

log = structlog.get_logger(__name__)

SNAPSHOT_NAME = "registry"  # one shard's (every release before sharding); see Shard.snapshot_name
SNAPSHOT_EVERY = 500  # agent events folded since the last snapshot
SNAPSHOT_S = 60.0
PAGE = 1000
CODEC = snapshots.Codec([Agent])


class AgentFollower:
    def __init__(
        self,
        store: EventStore,
        agents: dict[str, Agent],
        *,
        name: str = SNAPSHOT_NAME,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self.agents = agents  # the registry's own cache: one dict, one fold
        self.name = name
        self.owns = owns or _everyone
        self.position = 0
        self._started = False
        self._saved_at = 0
        self._saved_time = 0.0
        self._folded = 0  # agent events folded since the last snapshot

    async def start(self) -> set[str]:
        """Snapshot + tail (once); answers the agents the tail moved."""
        self._started = True
        found = await snapshots.load(self.store, self.name, CODEC)
        if found is not None:
            position, state = found
            for agent_id, agent in state["agents"].items():
                if not self.owns(agent_id):
                    continue
                known = self.agents.get(agent_id)
                if known is None or known.version < agent.version:
                    self.agents[agent_id] = agent
            self.position = self._saved_at = position
            log.info(
                "registry.snapshot_loaded",
                name=self.name,
                position=position,
                agents=len(self.agents),
            )
        self._saved_time = _now()
        return await self.catch_up()

    async def catch_up(self) -> set[str]:
        """Fold the agent records written since the last call; answers the agents moved."""
        if not self._started:
            return await self.start()
        head = await self.store.last_position()
        moved: set[str] = set()
        reload: set[str] = set()
        while True:
            page = await self.store.read_all(self.position, PAGE, stream_prefix=STREAM_PREFIX)
            for record in page:
                self.position = record.position
                agent_id = agent_of(record.stream)
                if agent_id is None or not self.owns(agent_id):
                    continue
                state = self.agents.get(agent_id) or Agent(agent_id)
                if record.version <= state.version:
                    continue  # our own append, already in the cache
                moved.add(agent_id)
                self._folded += 1
                if record.version == state.version + 1 and agent_id not in reload:
                    self.agents[agent_id] = evolve(state, load_event(record))
                else:
                    reload.add(agent_id)  # a gap (the cache was behind): read the stream
            if len(page) < PAGE:
                break
        self.position = max(self.position, head)
        for agent_id in reload:
            records = await self.store.read(stream_of(agent_id))
            self.agents[agent_id] = fold(agent_id, [load_event(r) for r in records])
        return moved

    def snapshot_due(self) -> bool:
        if self.position <= self._saved_at or self._folded == 0:
            return False
        return self._folded >= SNAPSHOT_EVERY or _now() - self._saved_time >= SNAPSHOT_S

    async def save(self) -> None:
        """Every agent's fold as of the position read to (call right after a catch-up)."""
        if self.position <= self._saved_at:
            return
        position = self.position
        await snapshots.save(self.store, self.name, position, CODEC, {"agents": dict(self.agents)})
        self._saved_at, self._saved_time, self._folded = position, _now(), 0
        log.info(
            "registry.snapshot_saved", name=self.name, position=position, agents=len(self.agents)
        )


def _everyone(_agent_id: str) -> bool:
    return True


def _now() -> float:
    return asyncio.get_running_loop().time()
