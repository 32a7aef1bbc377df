"""How many replicas a worker queue wants: pure arithmetic on what `rally status` observed.

Two observations of a queue ``interval`` seconds apart give its depth (ready
messages), its consumers, and how many messages were handled in between.
From those:

- ``ack_rate``: messages handled per second (measured, see workers/queue_signals.py);
- ``publish_rate`` ≈ ``ack_rate`` + depth change / interval (what came in is
  what went out plus what piled up), never below zero;
- the suggestion, for a queue of competing consumers: enough consumers, each
  handling what one handles now, to drain the backlog within the drain target
  while keeping up with what is still arriving::

      replicas = ceil((depth / drain_target_s + publish_rate) / (ack_rate / consumers))

  bounded by 1 and ``max_replicas``. A consumer's rate measures its capacity
  only while it has a backlog to chew on; without one, the current count keeps
  up and is what is suggested (an idle queue: the minimum).

A single-active-consumer queue (registry, allocator) delivers to one consumer
at a time whatever the load: extra replicas are hot standbys, so the
suggestion is one active plus one standby. Dead-letter queues are drained by
`rally dlq`, not by worker replicas: zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

SINGLE_ACTIVE_REPLICAS = 2  # one active consumer and one hot standby
DEFAULT_DRAIN_TARGET_S = 30.0
DEFAULT_MAX_REPLICAS = 10
# a float's residue (3.0000000001 consumers' worth of work) must not add a replica
_EPSILON = 1e-9
# a vanishing per-consumer rate makes the need overflow to infinity; the bound applies after
_FAR_BEYOND_ANY_BOUND = 1e9


class Mode(StrEnum):
    COMPETING = "competing"
    SINGLE_ACTIVE = "single-active"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    drain_target_s: float = DEFAULT_DRAIN_TARGET_S
    max_replicas: int = DEFAULT_MAX_REPLICAS

    def __post_init__(self) -> None:
        if not self.drain_target_s > 0:
            raise ValueError(f"the drain target must be above 0 seconds, got {self.drain_target_s}")
        if self.max_replicas < 1:
            raise ValueError(f"the replica bound must be at least 1, got {self.max_replicas}")


@dataclass(frozen=True, slots=True)
class QueueSample:
    """One passive declare: ready messages and consumers."""

    depth: int
    consumers: int


@dataclass(frozen=True, slots=True)
class QueueRates:
    """Messages per second over the window; ``ack_rate`` is None where nothing measures it."""

    publish_rate: float
    ack_rate: float | None


@dataclass(frozen=True, slots=True)
class Suggestion:
    replicas: int
    reason: str


def derive_rates(
    before: QueueSample, after: QueueSample, handled: int | None, elapsed_s: float
) -> QueueRates:
    """Rates from two samples and the messages handled between them (None: unknown).

    Without a handled count the publish rate is the depth growth alone: a lower bound.
    """
    if not elapsed_s > 0:
        raise ValueError(f"the samples must be apart in time, got {elapsed_s} s")
    growth = (after.depth - before.depth) / elapsed_s
    if handled is None:
        return QueueRates(publish_rate=max(0.0, growth), ack_rate=None)
    ack_rate = max(0, handled) / elapsed_s
    return QueueRates(publish_rate=max(0.0, ack_rate + growth), ack_rate=ack_rate)


def suggest_replicas(
    mode: Mode, sample: QueueSample, rates: QueueRates, policy: ScalingPolicy
) -> Suggestion:
    """The replica count for this queue, and why, in one sentence."""
    if mode is Mode.DEAD_LETTER:
        return Suggestion(0, "dead letters are drained by `rally dlq`, not by worker replicas")
    if mode is Mode.SINGLE_ACTIVE:
        return Suggestion(
            _bounded(SINGLE_ACTIVE_REPLICAS, policy),
            "single active consumer: one active and one standby; more add standbys, not throughput",
        )
    return _competing(sample, rates, policy)


def _competing(sample: QueueSample, rates: QueueRates, policy: ScalingPolicy) -> Suggestion:
    depth, current = sample.depth, sample.consumers
    ack_rate = rates.ack_rate or 0.0
    if current == 0:
        if depth > 0 or rates.publish_rate > 0:
            return Suggestion(
                _bounded(1, policy),
                f"{depth} waiting and no consumer: start one, then size from its ack rate",
            )
        return Suggestion(_bounded(1, policy), "idle and no consumer: the minimum")
    if depth == 0:
        if ack_rate == 0 and rates.publish_rate == 0:
            return Suggestion(_bounded(1, policy), "idle: the minimum")
        return Suggestion(_bounded(current, policy), "no backlog: the current consumers keep up")
    per_consumer = ack_rate / current
    if per_consumer <= 0:
        # consumers that acked nothing in the window: handlers slower than the window, or stuck
        return Suggestion(
            _bounded(current + 1, policy),
            f"{depth} waiting and nothing handled in the window: one more "
            "(a longer --interval measures slow handlers)",
        )
    needed = (depth / policy.drain_target_s + rates.publish_rate) / per_consumer
    replicas = max(1, math.ceil(min(needed, _FAR_BEYOND_ANY_BOUND) - _EPSILON))
    bounded = _bounded(replicas, policy)
    capped = f" (capped at {bounded})" if bounded < replicas else ""
    return Suggestion(
        bounded,
        f"{depth} waiting, {rates.publish_rate:.1f}/s arriving, {per_consumer:.1f}/s per "
        f"consumer: {replicas} drain it within {policy.drain_target_s:g} s{capped}",
    )


def _bounded(replicas: int, policy: ScalingPolicy) -> int:
    return max(1, min(policy.max_replicas, replicas))
