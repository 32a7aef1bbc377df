"""The projection runner: follow the store from a checkpoint, apply, commit both at once.

A ``Projection`` turns pages of recorded events into rows of its read model.
The runner reads a page after the projection's checkpoint
(``store.read_all(position, page, stream_prefix=projection.streams)``), lets the
projection buffer its writes in a ``Tx``, and commits those writes and the new
checkpoint in ONE transaction of the store's database. The checkpoint moves by
compare-and-set, so runners racing on one database (a worker's service and a
CLI catching up, two workers during a lease hand-over) never apply a page twice:
the loser's transaction rolls back and it continues from the position that won.

No record is skipped silently: if a projection cannot apply a record (an event
this release cannot decode, a bug), the records before it are committed and the
projection stops AT that record with its error, kept in the checkpoint row
(``health()``, ``checkpoint.read_health``). The other projections keep going.
A later run (after an upcaster ships, say) tries that record again.

Readers catch up in-process before answering (``catch_up``): the cost is the
tail since the last commit, whoever made it, not the history.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import structlog

from workers.readmodels.checkpoint import SCHEMA as CHECKPOINTS
from workers.readmodels.checkpoint import Health, advance, load, register
from workers.readmodels.sql import GuardMissed, Params, ReadModelDb, Row, Statement, database_for
from workers.store.base import EventStore, RecordedEvent
from workers.store.errors import StoreUnavailable

log = structlog.get_logger(__name__)

PAGE = 1000
RETRY_STOPPED_S = 60.0  # a stopped projection tries its record again this often


class Tx:
    """One page's writes, buffered until the runner commits them with the checkpoint.

    ``fetch`` reads the read model as last committed (not this page's own writes): keep
    what a page needs of itself in memory. ``position``: the checkpoint the page follows.
    """

    def __init__(self, db: ReadModelDb, position: int) -> None:
        self.db = db
        self.position = position
        self.writes: list[Statement] = []

    def execute(self, sql: str, params: Params = ()) -> None:
        """Queue a write (``?`` placeholders; upserts as ``INSERT ... ON CONFLICT``)."""
        self.writes.append(Statement(sql, tuple(params)))

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        return await self.db.fetch(sql, params)


class Projection(Protocol):
    """A read model kept by the runner.

    - ``name``: its checkpoint's key (stable: renaming it rebuilds from position 0).
    - ``schema``: idempotent DDL (``CREATE TABLE IF NOT EXISTS``, ``CREATE INDEX IF NOT
      EXISTS``) in portable SQL (TEXT, BIGINT, BOOLEAN), run at every start.
    - ``streams``: the stream prefix it reads (``"task-"``), or None for every record.
    - ``apply``: write the rows these records change into ``tx``. Raise to refuse a
      record (``Unreadable`` says which and why); the runner then applies the page's
      records one by one to commit those before it. So applying ``[a, b]`` must equal
      applying ``[a]`` then ``[b]`` into one ``Tx``, and in-memory caches must be checked
      against each record (e.g. its stream version): a page may be applied again after
      a rollback.
    """

    # read-only, so plain class attributes (a tuple of DDL, say) satisfy it
    @property
    def name(self) -> str: ...

    @property
    def schema(self) -> Sequence[str]: ...

    @property
    def streams(self) -> str | None: ...

    async def apply(self, tx: Tx, records: Sequence[RecordedEvent]) -> None: ...


class Unreadable(Exception):
    """A projection cannot apply this record (e.g. no contract for its type or version)."""

    def __init__(self, record: RecordedEvent, reason: str) -> None:
        super().__init__(
            f"{record.type} v{record.schema_version} at position {record.position} "
            f"({record.stream} v{record.version}): {reason}"
        )
        self.record = record
        self.reason = reason


class ProjectionRunner:
    """Keeps ``projections`` current in the store's own database (see the module docs)."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection],
        *,
        db: ReadModelDb | None = None,
        page: int = PAGE,
    ) -> None:
        self.store = store
        self.db = db or database_for(store)
        self.projections = list(projections)
        self.page = page
        self._health = {p.name: Health(p.name, 0) for p in self.projections}
        self._stopped_at: dict[str, float] = {}  # monotonic time each stopped, in this runner
        self._started = False

    async def start(self) -> None:
        """Create the checkpoint table and every projection's tables (idempotent)."""
        if self._started:
            return
        statements = [*CHECKPOINTS]
        for projection in self.projections:
            statements.extend(projection.schema)
        await self.db.ddl(statements)
        for projection in self.projections:
            guard = register(projection.name)
            await self.db.execute(guard.sql, guard.params)
            self._health[projection.name] = await load(self.db, projection.name)
        self._started = True

    def health(self) -> list[Health]:
        """Each projection's position and, if it stopped, the record and the error (as this
        runner last saw them; ``checkpoint.read_health`` reads any runner's)."""
        return [self._health[p.name] for p in self.projections]

    async def catch_up(self) -> int:
        """Apply everything recorded up to now (the store's last position as this call
        starts) to every projection not stopped; return that position."""
        await self.start()
        target = await self.store.last_position()
        for projection in self.projections:
            await self._run(projection, target)
        return target

    async def _run(self, projection: Projection, target: int) -> None:
        name = projection.name
        stopped = self._stopped_at.get(name)
        if stopped is not None and time.monotonic() - stopped < RETRY_STOPPED_S:
            return
        position = self._health[name].position
        while position < target:
            records = await self.store.read_all(
                position, self.page, stream_prefix=projection.streams
            )
            new = records[-1].position if records else position
            if len(records) < self.page:
                # Positions become visible in commit order (both adapters): no record of
                # ours at or below ``target`` is still to come.
                new = max(new, target)
            tx = Tx(self.db, position)
            failed: tuple[str, int] | None = None
            try:
                await projection.apply(tx, records)
            except StoreUnavailable:
                raise
            except Exception:
                tx, new, failed = await self._one_by_one(projection, position, records, new)
            error, error_position = failed if failed else (None, None)
            guard = advance(name, position, new, error=error, error_position=error_position)
            try:
                await self.db.commit(guard, tx.writes)
            except GuardMissed:
                # another runner moved it first: its commit stands, continue from there
                self._health[name] = await load(self.db, name)
                position = self._health[name].position
                log.info("readmodel.checkpoint_moved", projection=name, position=position)
                continue
            position = new
            self._health[name] = Health(name, new, error, error_position)
            if failed:
                self._stopped_at[name] = time.monotonic()
                log.error(
                    "readmodel.stopped",
                    projection=name,
                    position=new,
                    at=error_position,
                    error=error,
                )
                return
        if name in self._stopped_at:
            del self._stopped_at[name]
            log.info("readmodel.resumed", projection=name, position=position)

    async def _one_by_one(
        self,
        projection: Projection,
        position: int,
        records: Sequence[RecordedEvent],
        new: int,
    ) -> tuple[Tx, int, tuple[str, int] | None]:
        """The page again, record by record: what applied, where it stopped and why."""
        tx = Tx(self.db, position)
        last = position
        for record in records:
            mark = len(tx.writes)
            try:
                await projection.apply(tx, [record])
            except StoreUnavailable:
                raise
            except Exception as exc:
                del tx.writes[mark:]  # none of the refused record's writes
                reason = str(exc) if isinstance(exc, Unreadable) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, Unreadable):
                    log.exception("readmodel.apply_failed", projection=projection.name)
                return tx, last, (reason, record.position)
            last = record.position
        return tx, new, None  # each applied alone: the page stands
