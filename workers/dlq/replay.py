"""Replay dead letters: re-validate, publish with a confirm, then mark — once each.

The rules, in order:

1. Every message is validated against its contract again (``contracts.decode``),
   edited or not. One that still fails is refused with the reason, and
   nothing is published for it.
2. The letters about to be published are *claimed* in the archive, so a
   second replay running at the same time skips them. A letter is published
   at most once per replay: ids are deduplicated, and letters that carry the
   same message (same queue, id and body) are published once and all marked.
3. It is marked replayed only after the broker confirmed the publish. A
   failed publish releases the claim: the letter stays dead.

Where it goes and with which headers is decided in replay_plan.py (pure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, Protocol
from uuid import UUID, uuid4

import structlog

from broker.errors import PublishFailed, Unroutable
from broker.publisher import Outgoing
from broker.topology import Topology
from contracts import DeadLetterReplayed, DeadLetterReplayRefused, Event
from workers.dlq.archive import ArchiveError, DeadLetterArchive
from workers.dlq.history import History
from workers.dlq.model import DeadLetter, ReplayRecord
from workers.dlq.replay_plan import Plan, plan, replay_headers
from workers.runtime.clock import Clock, SystemClock

log = structlog.get_logger(__name__)

Outcome = Literal["replayed", "refused", "skipped", "failed", "would_replay", "would_refuse"]


class RawPublisher(Protocol):
    async def publish_raw(self, message: Outgoing) -> None: ...


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    outcome: Outcome
    detail: str = ""
    exchange: str = ""
    routing_key: str = ""


@dataclass(slots=True)
class ReplayReport:
    replay_id: str
    dry_run: bool
    results: list[Result] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return not any(r.outcome in ("failed", "refused", "would_refuse") for r in self.results)


class Replayer:
    def __init__(
        self,
        archive: DeadLetterArchive,
        publisher: RawPublisher,
        topology: Topology,
        *,
        history: History | None,
        by: str,
        clock: Clock | None = None,
        max_bytes: int = 1024 * 1024,
        claim_ttl_s: float = 300.0,
    ) -> None:
        self.archive = archive
        self.publisher = publisher
        self.topology = topology
        self.history = history
        self.by = by
        self.clock = clock or SystemClock()
        self.max_bytes = max_bytes
        self.claim_ttl = timedelta(seconds=claim_ttl_s)

    async def replay(
        self,
        letters: Sequence[DeadLetter],
        *,
        edited_body: bytes | None = None,
        dry_run: bool = False,
        rate: float | None = None,
        to_origin: bool = False,
    ) -> ReplayReport:
        if edited_body is not None and len({x.id for x in letters}) != 1:
            raise ValueError("an edited body replays exactly one dead letter")
        report = ReplayReport(replay_id=str(uuid4()), dry_run=dry_run)
        unique = {x.id: x for x in sorted(letters, key=lambda x: (x.last_death_at, x.id))}
        plans: list[Plan] = []
        for letter in unique.values():
            if letter.status != "dead":
                report.results.append(Result(letter.id, "skipped", f"already {letter.status}"))
                continue
            p = plan(
                letter,
                self.topology,
                edited_body=edited_body,
                max_bytes=self.max_bytes,
                to_origin=to_origin,
            )
            if p.refusal is not None:
                await self._refuse(report, p)
            else:
                plans.append(p)
        if dry_run:
            report.results += [
                Result(p.letter.id, "would_replay", "", p.exchange, p.routing_key) for p in plans
            ]
            return report
        await self._publish_all(report, plans, rate)
        return report

    async def _refuse(self, report: ReplayReport, p: Plan) -> None:
        reason, detail = p.refusal or ("invalid", "")
        outcome: Outcome = "would_refuse" if report.dry_run else "refused"
        report.results.append(Result(p.letter.id, outcome, f"{reason}: {detail}"))
        if report.dry_run:
            return
        log.warning("dlq.replay_refused", dead_letter_id=p.letter.id, reason=reason)
        event = DeadLetterReplayRefused(
            dead_letter_id=p.letter.id,
            replay_id=UUID(report.replay_id),
            queue=p.letter.queue,
            refusal=reason,
            detail=detail[:4000],
            edited=p.edited,
            by=self.by,
            refused_at=self.clock.now(),
        )
        await self._record(p.letter.id, event, f"dlq-refused:{report.replay_id}:{p.letter.id}")

    async def _publish_all(
        self, report: ReplayReport, plans: list[Plan], rate: float | None
    ) -> None:
        now = self.clock.now()
        taken = set(
            await self.archive.claim(
                [p.letter.id for p in plans],
                report.replay_id,
                now=now,
                stale_before=now - self.claim_ttl,
            )
        )
        groups: dict[tuple[str, str, str], list[Plan]] = {}
        for p in plans:
            if p.letter.id not in taken:
                report.results.append(Result(p.letter.id, "skipped", "another replay holds it"))
            else:
                groups.setdefault(p.same_message, []).append(p)
        interval = 1.0 / rate if rate else 0.0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        pending = list(groups.values())
        while pending:
            group = pending.pop(0)
            if interval:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at = max(next_at, loop.time()) + interval
            try:
                await self._publish_group(report, group)
            except (PublishFailed, ArchiveError) as exc:
                # the broker or the archive is away: stop here, leave the rest dead
                rest = [p for g in pending for p in g]
                await self.archive.release([p.letter.id for p in rest], report.replay_id)
                report.results += [
                    Result(p.letter.id, "failed", f"not attempted: {exc}") for p in rest
                ]
                return

    async def _publish_group(self, report: ReplayReport, group: list[Plan]) -> None:
        first = group[0]
        ids = [p.letter.id for p in group]
        outgoing = Outgoing(
            exchange=first.exchange,
            routing_key=first.routing_key,
            body=first.body,
            message_id=first.message_id,
            headers=replay_headers(first.letter, report.replay_id, self.by),
            type=first.message_type,
            correlation_id=first.correlation_id,
        )
        try:
            await self.publisher.publish_raw(outgoing)
        except Unroutable as exc:  # that one has nowhere to go; the others may
            await self.archive.release(ids, report.replay_id)
            report.results += [Result(i, "failed", str(exc)) for i in ids]
            return
        except PublishFailed as exc:
            await self.archive.release(ids, report.replay_id)
            report.results += [Result(i, "failed", str(exc)) for i in ids]
            raise
        record = ReplayRecord(
            replay_id=report.replay_id,
            at=self.clock.now(),
            by=self.by,
            exchange=first.exchange,
            routing_key=first.routing_key,
            edited=first.edited,
        )
        for p in group:
            note = "" if p is first else f"same message as {first.letter.id}, published once"
            try:
                marked = await self.archive.mark_replayed(p.letter.id, report.replay_id, record)
            except ArchiveError as exc:
                minutes = int(self.claim_ttl.total_seconds() // 60)
                report.results.append(
                    Result(
                        p.letter.id,
                        "failed",
                        f"published, but not marked replayed ({exc}); claimed for {minutes} min",
                    )
                )
                raise
            if not marked:
                note = "published, but another replay had taken it over (stale claim)"
                log.warning("dlq.replay_claim_lost", dead_letter_id=p.letter.id)
            report.results.append(
                Result(p.letter.id, "replayed", note, first.exchange, first.routing_key)
            )
            log.info(
                "dlq.replayed",
                dead_letter_id=p.letter.id,
                message_id=first.message_id,
                queue=p.letter.queue,
                replay_id=report.replay_id,
            )
            event = DeadLetterReplayed(
                dead_letter_id=p.letter.id,
                replay_id=UUID(report.replay_id),
                queue=p.letter.queue,
                reason=p.letter.reason,
                message_id=first.message_id,
                message_type=first.message_type,
                exchange=first.exchange,
                routing_key=first.routing_key,
                edited=first.edited,
                by=self.by,
                replayed_at=record.at,
            )
            await self._record(p.letter.id, event, f"dlq-replayed:{report.replay_id}:{p.letter.id}")

    async def _record(self, dead_letter_id: str, event: Event, key: str) -> None:
        """History is the audit trail, not the source of truth for status (the archive is):
        a failed append is logged loudly, and the replay goes on."""
        if self.history is None:
            return
        try:
            await self.history.record(dead_letter_id, event, key=key)
        except Exception:
            log.exception("dlq.history_failed", dead_letter_id=dead_letter_id, key=key)
