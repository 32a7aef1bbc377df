"""Every AMQP header name rallypoint writes or reads: the wire protocol's one list of them.

Every name under :data:`RESERVED_PREFIX` is set by rallypoint itself. The consumer runtime
honours such a header only on a delivery a service user published (the workers' own user,
or ``RALLY_SERVICE_USERS``); from anyone else they are dropped on entry, bundle members'
headers included (broker/trust.py). ``traceparent`` carries no trust and passes as it is.
"""

from __future__ import annotations

RESERVED_PREFIX = "x-rally-"  # headers only rallypoint may set; stripped from other senders

TRACEPARENT = "traceparent"  # W3C trace context

# ---- the consumer runtime: retries through the delay queues ----
ATTEMPT = "x-rally-attempt"  # 1 on the first delivery; grows with each retry through a delay queue
DUE_AT = "x-rally-due-at"  # epoch ms before which a retried message hops another delay tier
LAST_ERROR = "x-rally-last-error"  # why the previous attempt failed
TARGET_QUEUE = "x-rally-queue"  # the work queue a retried message goes back to
# epoch ms a replica first parked a message one version newer than it reads, for a replica
# of the next release (a rolling upgrade); dead-lettered unknown_version past the horizon
NEWER_SINCE = "x-rally-newer-since"
# the broker user who first sent a copy that a service user re-published ("" = anonymous)
ORIGINAL_USER_ID = "x-rally-original-user-id"

# ---- set on every dead letter rallypoint publishes ----
DL_REASON = "x-rally-reason"
DL_ERROR = "x-rally-error"
DL_ERROR_TYPE = "x-rally-error-type"
DL_ERRORS = "x-rally-errors"  # JSON list of {loc, msg} for invalid messages
DL_QUEUE = "x-rally-dead-queue"
DL_EXCHANGE = "x-rally-original-exchange"
DL_ROUTING_KEY = "x-rally-original-routing-key"
DL_ATTEMPTS = "x-rally-attempts"
DL_FIRST_DEATH = "x-rally-first-death-at"
DL_LAST_DEATH = "x-rally-dead-at"
DL_WORKER = "x-rally-worker"
DL_REPLICA = "x-rally-replica"
DL_TYPE = "x-rally-type"

# ---- `rally dlq replay` ----
REPLAY_OF = "x-rally-replay-of"  # set on a replayed message: the dead letter it came from
REPLAY_ID = "x-rally-replay-id"
REPLAYED_BY = "x-rally-replayed-by"

# ---- the outbox relay ----
MESSAGE_TYPE = DL_TYPE  # an outbox row's envelope type: a notice's routing key is its recipient
POSITION = "x-rally-position"
STREAM = "x-rally-stream"
VERSION = "x-rally-version"

# ---- registry shards (broker/forward.py) ----
FORWARDS = "x-rally-forwards"  # how many times a registry shard re-published it to another

# ---- bundles ----
BUNDLE_COUNT = "x-rally-bundle"  # how many members (for people reading queues)


def reserved(name: str) -> bool:
    """A header only rallypoint may set (and only a service user's copy may carry)."""
    return name.startswith(RESERVED_PREFIX)
