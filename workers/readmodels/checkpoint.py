"""Where each projection is in the history, and why it stopped if it did.

One row per projection in ``readmodel_checkpoints``, committed in the same
transaction as the projection's rows. Every move is a compare-and-set on the
position (``... WHERE name = ? AND position = ?``), so two runners on one
database never both apply a page: the loser rolls back and continues from the
position that won.

``error`` / ``error_position``: the record the projection could not apply (it
stays stopped before it until a release that can read it runs). Persisted, so
``rally status`` in another process can say so without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.readmodels.sql import ReadModelDb, Statement
from workers.store.codec import utc_now
from workers.store.errors import StoreError

TABLE = "readmodel_checkpoints"

SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        name           TEXT PRIMARY KEY,
        position       BIGINT NOT NULL,
        error          TEXT,
        error_position BIGINT,
        updated_at     TEXT NOT NULL
    )
    """,
)


@dataclass(frozen=True, slots=True)
class Health:
    """A projection's place in the history. ``error``: why it stopped at ``error_position``
    (None: it is working). ``position``: the last record applied."""

    name: str
    position: int
    error: str | None = None
    error_position: int | None = None

    @property
    def stopped(self) -> bool:
        return self.error is not None


def _now() -> str:
    return utc_now().isoformat(timespec="microseconds")


def register(name: str) -> Statement:
    """The projection's row at position 0, unless it has one."""
    return Statement(
        f"INSERT INTO {TABLE} (name, position, updated_at) VALUES (?, 0, ?)"
        " ON CONFLICT (name) DO NOTHING",
        (name, _now()),
    )


def advance(
    name: str, old: int, new: int, *, error: str | None = None, error_position: int | None = None
) -> Statement:
    """Move from ``old`` to ``new`` (they may be equal when only the error changes)."""
    return Statement(
        f"UPDATE {TABLE} SET position = ?, error = ?, error_position = ?, updated_at = ?"
        " WHERE name = ? AND position = ?",
        (new, error, error_position, _now(), name, old),
    )


async def load(db: ReadModelDb, name: str) -> Health:
    rows = await db.fetch(
        f"SELECT name, position, error, error_position FROM {TABLE} WHERE name = ?", (name,)
    )
    if not rows:
        return Health(name, 0)
    return _health(rows[0])


async def read_health(db: ReadModelDb) -> list[Health]:
    """Every projection's checkpoint as last committed, by any process (for ``rally status``).

    Empty if no runner has run on this database yet."""
    try:
        rows = await db.fetch(
            f"SELECT name, position, error, error_position FROM {TABLE} ORDER BY name"
        )
    except StoreError:  # no table yet: nothing has run here
        return []
    return [_health(r) for r in rows]


def _health(row: tuple[object, ...]) -> Health:
    name, position, error, error_position = row
    return Health(
        str(name),
        int(str(position)),
        None if error is None else str(error),
        None if error_position is None else int(str(error_position)),
    )
