"""One retention run: prune processed-message ids, archive and delete old ended tasks.

1. Processed-message ids older than the duplicate horizon are forgotten
   (``prune_processed``; the horizon is worked out in policy.py).
2. Ended tasks whose last event is older than the retention are found by walking the
   oldest ``task-`` events in position order up to the cutoff. What is there is what
   earlier runs left: deleted tasks are gone from the walk, so it costs what is old,
   not the whole history.
3. Each candidate is folded with the task manager's own fold. It stays while it has
   not ended, while it changed after the cutoff, or while a dependent of it is still
   waiting (a dependent learns of its dependency's end through a ResolveDependency
   already sent, but it is left alone until it has ended too).
4. A batch (``RetentionSettings.batch`` tasks) is exported first — the task streams
   and their idempotency-key streams, one gzip JSON Lines file under the archive —
   and only then deleted, in one transaction, with their timers, snapshots and
   processed-message ids (``expire``). A crash between the two exports them again
   next time; import skips events it already holds.
5. The deleted tasks are marked ``expired`` in the tasks read model, so a question
   about one answers its final state and "expired", not "unknown".
6. The space is handed back (``reclaim_space``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol
from uuid import UUID

import structlog

from contracts import ContractError, TaskCancelled, TaskDead, TaskKeyClaimed, TaskSucceeded
from workers.retention.archive import write_file
from workers.retention.policy import RetentionSettings
from workers.runtime.messages import load_event
from workers.store.base import EventStore, ExpireResult, Expiry, RecordedEvent
from workers.tasks.state import STREAM_PREFIX, Task, fold, key_stream, stream_of

log = structlog.get_logger(__name__)

PAGE = 1000
ENDINGS = frozenset(t.type_name() for t in (TaskSucceeded, TaskCancelled, TaskDead))


class RetentionStore(EventStore, Protocol):
    """What the job needs of an adapter (both have it)."""

    async def expire(self, groups: Sequence[Expiry]) -> ExpireResult: ...

    async def prune_processed(self, older_than: timedelta) -> int: ...

    async def reclaim_space(self, *, full: bool = False) -> int: ...

    async def mark_expired(self, table: str, task_ids: Sequence[str]) -> int | None: ...

    async def min_position(self, table: str) -> int | None: ...


@dataclass(slots=True)
class RunReport:
    processed_pruned: int = 0
    candidates: int = 0
    deleted_tasks: list[UUID] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)  # why a candidate stayed → how many
    events_deleted: int = 0
    archives: list[Path] = field(default_factory=list)
    marked_expired: int | None = 0  # None: no tasks read model in this store

    def keep(self, why: str) -> None:
        self.kept[why] = self.kept.get(why, 0) + 1


@dataclass(frozen=True, slots=True)
class Candidate:
    task: Task
    records: list[RecordedEvent]  # the task's and its key's, in position order
    streams: dict[str, int]


async def run_once(
    store: RetentionStore, settings: RetentionSettings, now: datetime, *, dry_run: bool = False
) -> RunReport:
    report = RunReport()
    if not dry_run:
        report.processed_pruned = await store.prune_processed(settings.processed_horizon)
    retention = settings.effective_retention
    if retention is None:
        return report
    cutoff = now - retention
    # Never delete what a read model has not applied yet: it could never see it again
    # (the tasks read model would keep a row that never ended). None: no read models here.
    applied = await store.min_position(settings.checkpoints_table)
    found = await ended_before(store, cutoff)
    report.candidates = len(found)
    batch: list[Candidate] = []
    for task_id in found:
        candidate = await _candidate(store, task_id, cutoff, report)
        if candidate is None:
            continue
        if applied is not None and candidate.records[-1].position > applied:
            report.keep("read_model_behind")
            continue
        batch.append(candidate)
        if len(batch) >= settings.batch:
            await _expire(store, settings, batch, now, report, dry_run)
            batch = []
    if batch:
        await _expire(store, settings, batch, now, report, dry_run)
    if report.deleted_tasks and not dry_run:
        await store.reclaim_space()
    log.info(
        "retention.run",
        processed_pruned=report.processed_pruned,
        candidates=report.candidates,
        deleted=len(report.deleted_tasks),
        events=report.events_deleted,
        kept=report.kept,
        dry_run=dry_run,
    )
    return report


async def ended_before(store: EventStore, cutoff: datetime) -> list[UUID]:
    """Tasks with an ending recorded before ``cutoff``, oldest first.

    Walks ``task-`` events from the start, in position order, and stops at the first one
    recorded at or after the cutoff (positions follow the store's clock). Gaps left by
    earlier runs are skipped by ``position > cursor``; nothing counts positions."""
    found: dict[UUID, None] = {}
    cursor = 0
    while page := await store.read_all(cursor, PAGE, stream_prefix=STREAM_PREFIX):
        for record in page:
            if record.recorded_at >= cutoff:
                return list(found)
            if record.type in ENDINGS:
                found[UUID(record.stream.removeprefix(STREAM_PREFIX))] = None
        cursor = page[-1].position
    return list(found)


async def _fold(store: EventStore, task_id: UUID) -> tuple[Task, list[RecordedEvent]]:
    records = await store.read(stream_of(task_id))
    return fold(task_id, [load_event(r) for r in records]), records


async def _candidate(
    store: EventStore, task_id: UUID, cutoff: datetime, report: RunReport
) -> Candidate | None:
    try:
        task, records = await _fold(store, task_id)
        if not task.terminal or not records:
            report.keep("not_ended")
            return None
        if records[-1].recorded_at >= cutoff:
            report.keep("recent")
            return None
        for dependent in task.dependents:
            other, _ = await _fold(store, dependent)
            if other.submitted and not other.terminal:
                report.keep("live_dependent")
                return None
        streams = {stream_of(task_id): task.version}
        key = task.spec.idempotency_key if task.spec else None
        if key is not None:
            key_records = await store.read(key_stream(key))
            claims = [load_event(r) for r in key_records]
            if claims and all(
                isinstance(c, TaskKeyClaimed) and c.task_id == task_id for c in claims
            ):
                streams[key_stream(key)] = len(key_records)
                records = sorted([*records, *key_records], key=lambda r: r.position)
    except (ContractError, TypeError, ValueError) as exc:  # a record no contract reads: leave it be
        log.warning("retention.unreadable", task_id=str(task_id), error=str(exc))
        report.keep("unreadable")
        return None
    return Candidate(task, records, streams)


async def _expire(
    store: RetentionStore,
    settings: RetentionSettings,
    batch: list[Candidate],
    now: datetime,
    report: RunReport,
    dry_run: bool,
) -> None:
    if dry_run:
        report.deleted_tasks += [c.task.task_id for c in batch]
        return
    records = sorted((r for c in batch for r in c.records), key=lambda r: r.position)
    name = f"tasks-{now:%Y%m%dT%H%M%S%fZ}-{records[0].position}-{records[-1].position}.jsonl.gz"
    path = settings.archive / name
    write_file(path, records)  # first the archive, then the delete
    report.archives.append(path)
    groups = [
        Expiry(
            streams=c.streams,
            processed_keys=sorted(
                {str(r.metadata["message_id"]) for r in c.records if r.metadata.get("message_id")}
            ),
        )
        for c in batch
    ]
    result = await store.expire(groups)
    report.events_deleted += result.events
    for why in result.kept.values():
        report.keep(why)
    deleted = [batch[i].task.task_id for i in result.deleted]
    report.deleted_tasks += deleted
    marked = await store.mark_expired(settings.read_model_table, [str(t) for t in deleted])
    if marked is None:
        report.marked_expired = None
    elif report.marked_expired is not None:
        report.marked_expired += marked
