"""Read models: projections of the event store, persisted next to it and kept current.

``ProjectionRunner`` (runner.py) follows the store from each projection's
checkpoint and commits the projection's rows with the checkpoint in one
transaction; a ``Projection`` is a name, its DDL, the streams it reads and
``apply(tx, records)``. ``tasks.py`` is the tasks read model; ``task_queries.py``
answers from it.
"""

from workers.readmodels.checkpoint import Health, read_health
from workers.readmodels.runner import Projection, ProjectionRunner, Tx, Unreadable
from workers.readmodels.sql import ReadModelDb, database_for

__all__ = [
    "Health",
    "Projection",
    "ProjectionRunner",
    "ReadModelDb",
    "Tx",
    "Unreadable",
    "database_for",
    "read_health",
]
