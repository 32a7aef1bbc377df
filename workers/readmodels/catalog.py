"""Every read model the ``readmodels`` service keeps current: add a projection here."""

from __future__ import annotations

from workers.readmodels.agents import AgentsProjection
from workers.readmodels.runner import Projection
from workers.readmodels.tasks import TasksProjection
from workers.store.base import EventStore


def projections(store: EventStore) -> list[Projection]:
    return [TasksProjection(store), AgentsProjection(store)]
