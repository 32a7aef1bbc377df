"""Whether the agent takes an assignment: pure, so every case is unit-tested without a broker.

The allocator places work from what the registry last heard, which can be
stale; the agent is the final word on its own capacity. An assignment it
cannot take is *rejected* (never queued locally), so the task goes back to
pending at once and can be placed on an agent that has room.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from contracts import AssignTask

Verdict = Literal["run", "duplicate", "reject", "replace"]


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    reason: str = ""


def admit(
    assign: AssignTask,
    *,
    capabilities: Collection[str],
    capacity: int,
    running: Mapping[UUID, int],
    draining: bool,
) -> Admission:
    """``running`` maps each task the agent runs now to the attempt it runs."""
    current = running.get(assign.task_id)
    if current is not None and current >= assign.attempt:
        # a redelivered assignment (the inbox is at-least-once): the attempt already runs
        return Admission("duplicate", f"attempt {current} already running")
    if draining:
        return Admission("reject", "agent is draining")
    if assign.capability not in capabilities:
        return Admission("reject", f"no handler for capability {assign.capability!r}")
    if current is not None:
        # a newer attempt of a task we still run: the old one is stale (fenced), run the new
        return Admission("replace", f"attempt {assign.attempt} supersedes {current}")
    if len(running) >= capacity:
        return Admission("reject", f"agent is full ({len(running)}/{capacity} running)")
    return Admission("run")
