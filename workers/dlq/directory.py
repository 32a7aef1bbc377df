"""Which dead-letter queues there are to drain, without a management API to list them.

Candidates come from what the code knows: the workers' queues (topology), the
one DLQ every agent inbox shares, the own DLQs of inboxes an earlier release made
(from the agents read model), anything configured
(``RALLY_DLQ_QUEUES``), and every DLQ the archive has taken letters from
before. A passive declare then tells which of them exist and how full they are.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from broker.topology import Topology
from workers.dlq.archive import DeadLetterArchive
from workers.readmodels.agents import agent_ids as read_agent_ids
from workers.readmodels.agents import agents_runner
from workers.store import EventStore

DEFAULT_WORKERS = ("registry", "tasks", "allocator")

AgentIds = Callable[[], Awaitable[Iterable[str]]]


class DlqDirectory:
    def __init__(
        self,
        topology: Topology,
        *,
        workers: Sequence[str] = DEFAULT_WORKERS,
        extra: Sequence[str] = (),
        agents: AgentIds | None = None,
        archive: DeadLetterArchive | None = None,
    ) -> None:
        self.topology = topology
        self.workers = tuple(workers)
        self.extra = tuple(extra)
        self.agents = agents
        self.archive = archive

    @classmethod
    def from_env(
        cls,
        topology: Topology,
        env: Mapping[str, str] | None = None,
        *,
        agents: AgentIds | None = None,
        archive: DeadLetterArchive | None = None,
    ) -> DlqDirectory:
        """RALLY_DLQ_WORKERS (comma list, default registry,tasks,allocator) and
        RALLY_DLQ_QUEUES (extra queue names, with or without ``.dlq``)."""
        env = os.environ if env is None else env
        workers = _split(env.get("RALLY_DLQ_WORKERS")) or DEFAULT_WORKERS
        return cls(
            topology,
            workers=workers,
            extra=_split(env.get("RALLY_DLQ_QUEUES")),
            agents=agents,
            archive=archive,
        )

    async def candidates(self) -> list[str]:
        names = [self.topology.worker_queue(w) + ".dlq" for w in self.workers]
        names.append(self.topology.inbox_dlq)  # every inbox's dead letters
        names += [q if q.endswith(".dlq") else f"{q}.dlq" for q in self.extra]
        if self.agents is not None:  # an inbox of an earlier release has a DLQ of its own
            names += [f"{self.topology.inbox_queue(a).name}.dlq" for a in await self.agents()]
        if self.archive is not None:
            prefix = f"{self.topology.namespace}."
            names += [q for q in await self.archive.queues() if q.startswith(prefix)]
        return list(dict.fromkeys(names))


def store_agent_ids(store: EventStore) -> AgentIds:
    """Every agent the history has heard of, from the agents read model (caught up first):
    an inbox an earlier release made has a DLQ of its own, which outlives it (no expiry)."""

    async def agent_ids() -> list[str]:
        runner = await agents_runner(store)
        return await read_agent_ids(runner.db)

    return agent_ids


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())
