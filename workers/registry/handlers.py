"""The registry's handlers and sweeper: load the agent → decide → append with its outbox.

The active replica (single active consumer) sees every heartbeat and keeps the
last one per agent in memory; the sweeper turns silence into ``AgentLost``.
The append carries the expected stream version, so of two replicas racing to
declare the same agent lost exactly one wins; the loser reloads, sees the
agent lost, and decides nothing.

With several shards (workers/registry/shards.py) a registry knows only the agents it
owns: it folds, sweeps and counts them alone, and a command for another shard's agent
is forwarded before anything else is done with it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

import structlog

from broker.router import Incoming
from contracts import DeregisterAgent, Heartbeat, RegisterAgent
from workers.registry.domain import CheckDrained, CheckSilence, Command, HeartbeatSeen, decide
from workers.registry.follow import AgentFollower
from workers.registry.holdings import Holdings
from workers.registry.shards import Shard
from workers.registry.state import Agent, evolve, fold, stream_of
from workers.runtime.clock import Clock
from workers.runtime.conflicts import on_conflict_retry
from workers.runtime.messages import load_event, metadata_for, new_event
from workers.runtime.settings import WorkerSettings
from workers.store.base import EventStore, Metadata

log = structlog.get_logger(__name__)

WORKER = "registry"
PAGE = 1000
# forwards a command for another shard's agent: True when it did (workers/registry/shards.py)
Forward = Callable[[Incoming[Any], str], Awaitable[bool]]


class Registry:
    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        settings: WorkerSettings,
        *,
        replica: str,
        forward: Forward | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.replica = replica
        self.shard = Shard.of(settings)
        self._forward = forward
        self.agents: dict[str, Agent] = {}  # cache, keyed by id; the version guards it
        self.last_seen: dict[str, datetime] = {}
        self.holdings = Holdings(store)  # what the task history gives each agent
        # Only the replica the broker delivers to (single active consumer) may sweep:
        # a standby hears no heartbeats and would declare everyone lost.
        self.active = False
        self._last_delivery: datetime | None = None
        # Cut off from the broker it hears nobody: silence is then no sign of a lost agent.
        # The service wires this to its connection's state.
        self.broker_up: Callable[[], bool] = lambda: True
        self._cut_off = False
        # the agents' fold from a snapshot and the tail of agent-* (every replica follows)
        self.follower = AgentFollower(
            store, self.agents, name=self.shard.snapshot_name, owns=self.shard.owns
        )
        # The consumer runs deliveries concurrently; one agent's messages must still be
        # decided in the order it sent them (register x, then register x+y). asyncio.Lock
        # is FIFO and is taken before the first await, so delivery order is kept.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def owns(self, agent_id: str) -> bool:
        return self.shard.owns(agent_id)

    # ---- state ----
    async def load(self, agent_id: str) -> Agent:
        records = await self.store.read(stream_of(agent_id))
        state = fold(agent_id, [load_event(r) for r in records])
        self.agents[agent_id] = state
        return state

    async def load_present(self) -> int:
        """Every live or draining agent (snapshot + tail), each with a fresh window."""
        await self.follower.catch_up()
        now = self.clock.now()
        for agent_id, state in self.agents.items():
            if state.present:
                self.last_seen[agent_id] = now
        present = sum(1 for a in self.agents.values() if a.present)
        log.info("registry.loaded", agents=len(self.agents), present=present)
        return present

    async def stop(self) -> None:
        """A clean stop saves the agents' fold, so the next start reads only the tail."""
        if self.active:
            await self.follower.catch_up()
            await self.follower.save()

    async def _noticed(self) -> None:
        """A delivery arrived: this replica is (or just became) the active one."""
        now = self.clock.now()
        if not self.active:
            self.active = True
            await self.load_present()  # failover: give every present agent a fresh window
        self._last_delivery = now

    async def _forwarded(self, incoming: Incoming[Any], agent_id: str) -> bool:
        """Another shard's agent: forwarded (True), and this registry keeps nothing of it."""
        if self.shard.owns(agent_id):
            return False
        await self._noticed()  # a delivery all the same: this replica has the queue
        if self._forward is None:
            raise RuntimeError(f"registry shard {self.shard.label} cannot forward: not wired")
        return await self._forward(incoming, agent_id)

    # ---- commands ----
    async def on_register(self, incoming: Incoming[RegisterAgent]) -> None:
        cmd = incoming.payload
        if await self._forwarded(incoming, cmd.agent_id):
            return
        async with self._locks[cmd.agent_id]:
            await self._noticed()
            self.last_seen[cmd.agent_id] = self.clock.now()
            await self._decide_and_append(cmd.agent_id, cmd, incoming)

    async def on_deregister(self, incoming: Incoming[DeregisterAgent]) -> None:
        cmd = incoming.payload
        if await self._forwarded(incoming, cmd.agent_id):
            return
        async with self._locks[cmd.agent_id]:
            await self._noticed()
            await self._decide_and_append(cmd.agent_id, cmd, incoming)

    async def on_heartbeat(self, incoming: Incoming[Heartbeat]) -> None:
        if await self._forwarded(incoming, incoming.payload.agent_id):
            return
        async with self._locks[incoming.payload.agent_id]:
            await self._heartbeat(incoming)

    async def _heartbeat(self, incoming: Incoming[Heartbeat]) -> None:
        await self._noticed()
        hb = incoming.payload
        agent = self.agents.get(hb.agent_id) or await self.load(hb.agent_id)
        if agent.status == "new":
            log.debug("registry.heartbeat_unknown", agent_id=hb.agent_id)
            return
        self.last_seen[hb.agent_id] = self.clock.now()
        # only a draining agent that holds nothing now, or a lost one heard again, makes history
        if agent.status in ("draining", "lost"):
            await self._decide_and_append(hb.agent_id, HeartbeatSeen(hb), incoming)

    # ---- the sweeper ----
    async def catch_up(self) -> None:
        """Fold the agent records written since we last read (the follower's tail).

        Our cache only sees our own writes. After a connection blip another replica may
        have believed it was active for a moment and written (typically: every agent
        lost, since it no longer heard them). Without this the active replica would keep
        those agents live in memory, never rejoin them on their heartbeats, and nothing
        would be placed on them again.
        """
        moved = await self.follower.catch_up()
        now = self.clock.now()
        for agent_id in moved:
            state = self.agents[agent_id]
            if state.present:
                self.last_seen.setdefault(agent_id, now)
            else:
                self.last_seen.pop(agent_id, None)

    async def sweep(self) -> int:
        """Declare lost every present agent silent past its window; returns how many."""
        await self.catch_up()  # a standby follows too, so a takeover reads only the tail
        if not self.active:
            return 0
        if self.follower.snapshot_due():
            await self.follower.save()
        now = self.clock.now()
        if not self.broker_up():
            self._cut_off = True
            return 0
        if self._cut_off:  # back: every present agent gets a fresh window, as on failover
            self._cut_off = False
            self.last_seen.update(dict.fromkeys(self.last_seen, now))
        lost = 0
        for agent in list(self.agents.values()):
            if not agent.present:
                continue
            seen = self.last_seen.setdefault(agent.agent_id, now)
            window = self.settings.lost_after_factor * agent.heartbeat_interval_s
            if (now - seen).total_seconds() < window:
                if agent.status == "draining":
                    # its last task may have ended with no heartbeat since (it stops beating)
                    drained = CheckDrained(agent.agent_id)
                    await self._decide_and_append(agent.agent_id, drained, None)
                continue
            check = CheckSilence(agent.agent_id, seen, window)
            if await self._decide_and_append(agent.agent_id, check, None, cached=True):
                lost += 1
        self._maybe_step_down(now)
        return lost

    def _maybe_step_down(self, now: datetime) -> None:
        # No delivery for twice the longest window: another replica has the queue (our
        # connection blipped), or the fleet is empty. Stop sweeping until delivered to.
        windows = [
            self.settings.lost_after_factor * a.heartbeat_interval_s
            for a in self.agents.values()
            if a.present
        ]
        idle_limit = 2 * max(windows, default=0.0)
        idle = (now - self._last_delivery).total_seconds() if self._last_delivery else 0.0
        if windows and idle > idle_limit:
            log.info("registry.standby", idle_s=idle_limit)
            self.active = False

    async def _held(self, state: Agent, command: Command) -> int | None:
        """How many tasks the task history gives the agent, when the decision needs it."""
        leaving = isinstance(command, DeregisterAgent) and (
            command.drain or state.status == "draining"
        )
        if not leaving and not (state.status == "draining" and _drain_check(command)):
            return None
        return len(await self.holdings.held_by(state.agent_id))

    # ---- the one write path ----
    async def _decide_and_append(
        self,
        agent_id: str,
        command: Command,
        incoming: Incoming[Any] | None,
        *,
        cached: bool = False,
    ) -> bool:
        """Decide on the current state and append; on a conflict reload and decide again.

        ``cached``: start from the cached state (the sweeper's hot path); the expected
        version still guards the append, and a conflict reloads from the store.
        """
        meta = metadata_for(incoming, worker=WORKER, replica=self.replica)
        key = incoming.message_id if incoming is not None else None
        use_cache = [cached and agent_id in self.agents]

        async def attempt() -> bool:
            if use_cache[0]:
                state = self.agents[agent_id]
                use_cache[0] = False
            else:
                state = await self.load(agent_id)
            held = await self._held(state, command)
            events = decide(state, command, self.clock.now(), held=held)
            if not events:
                return False
            result = await self.store.append(
                stream_of(agent_id),
                state.version,
                [new_event(e) for e in events],
                metadata=meta,
                idempotency_key=key,
            )
            if result.duplicate:
                await self.load(agent_id)
                return False
            for event in events:
                state = evolve(state, event)
            self.agents[agent_id] = state
            _log_events(agent_id, (type(e).__name__ for e in events), meta)
            if not self.agents[agent_id].present:
                self.last_seen.pop(agent_id, None)
            return True

        return await on_conflict_retry(
            attempt, attempts=self.settings.conflict_attempts, what=f"agent {agent_id}"
        )


def _drain_check(command: Command) -> bool:
    return isinstance(command, HeartbeatSeen | CheckDrained)


def _log_events(agent_id: str, types: Iterable[str], meta: Metadata) -> None:
    for name in types:
        log.info("registry.recorded", agent_id=agent_id, recorded=name, replica=meta.replica)
