"""Every exchange, queue, argument and binding rallypoint uses, in one place.

Read top to bottom, for a namespace ``ns`` (default ``rally``)::

    exchanges
      ns.commands   topic   "<route>.<Type>"      agents and clients -> worker queues
      ns.events     topic   "<category>.<Type>"   the outbox relay -> anyone subscribed
      ns.inbox      direct  "<agent or client id>" workers -> one agent's / client's inbox
      ns.retry      topic   "<tier>.<queue>"      a retried message waits in a delay queue
      ns.requeue    topic   "<tier>.<queue>"      delay queues dead-letter back to the work queue
      ns.dlx        direct  "<queue>"             dead letters, with the reason, -> <queue>.dlq

    queues (durable quorum; work queues dead-letter at-least-once to ns.dlx)
      ns.q.registry    commands registry.#            single active; of n shards, shard 0
      ns.q.registry.<k> commands registry.*.<slot>    shard k: slots s % n == k (shard 0
                                                      also unslotted keys; contracts/shards.py)
      ns.q.tasks       commands tasks.#               competing consumers
      ns.q.allocator   commands allocator.#
                       + events ALLOCATOR_EVENT_KEYS  single active consumer
      ns.dashboard.<id> commands registry.Heartbeat   a dashboard's tap: exclusive,
                                                      no acks, bounded, drops oldest
      ns.inbox.<id>    inbox <id>                     one per agent, expires unused; classic
                                                      v1 (quorum on a cluster); older kept
      ns.delay.<tier>  retry <tier>.#                 message TTL = tier, then back to work
      <queue>.dlq      dlx <queue>                    the dead letters of each work queue
      ns.clients.dlq   dlx ns.clients.dlq             dead letters of clients' private inboxes
      ns.inboxes.dlq   dlx ns.inboxes.dlq             every agent inbox's dead letters
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from contracts.shards import SLOTS, slots_of_shard

# The events the allocator follows: what changes what can be placed. The events exchange
# carries only what some queue here subscribes to (see ``event_subscribed``).
ALLOCATOR_TASK_EVENTS: tuple[str, ...] = (
    "TaskSubmitted",
    "TaskReady",
    "TaskFailed",
    "TaskRequeued",
    "TaskSucceeded",
    "TaskCancelled",
    "TaskDead",
)
ALLOCATOR_EVENT_KEYS: tuple[str, ...] = (
    *(f"task.{t}" for t in ALLOCATOR_TASK_EVENTS),
    "agent.#",
    "resource.#",
)
# Agents renew direct leases with RenewLease; heartbeats are the registry's alone.
ALLOCATOR_COMMAND_KEYS: tuple[str, ...] = ("allocator.#",)
# Bindings earlier releases declared on the allocator's queue: unbound at declare, so an
# upgraded allocator is not handed messages it no longer takes.
ALLOCATOR_RETIRED_COMMAND_KEYS: tuple[str, ...] = ("registry.Heartbeat",)
# Every binding on the events exchange, across every queue declared here.
EVENT_SUBSCRIPTIONS: tuple[str, ...] = ALLOCATOR_EVENT_KEYS

# ``#`` matches zero words too: slotted (registry.Heartbeat.<slot>) and unslotted keys
DASHBOARD_TAP_KEYS: tuple[str, ...] = ("registry.Heartbeat.#",)
# The registry commands an agent sends; unslotted (an agent of an earlier release, or one
# that does not hash) they reach shard 0, which forwards each to its agent's slot.
REGISTRY_COMMAND_TYPES: tuple[str, ...] = ("RegisterAgent", "Heartbeat", "DeregisterAgent")
DASHBOARD_TAP_MAX_LENGTH = 10_000

# A retry waits in the smallest tier at least as long as its delay; long delays hop tiers.
DELAY_TIERS_MS: tuple[int, ...] = (100, 500, 2_000, 10_000, 60_000)
INBOX_EXPIRES_MS = 24 * 3600 * 1000
# durable classic queues, version 2: messages on disk, an index per queue, no Raft group
CLASSIC: dict[str, Any] = {"x-queue-type": "classic", "x-queue-version": 2}
# Inboxes are version 1: on RabbitMQ 3.10 a version 2 queue holding messages keeps files
# open outside the file handle limit (~500 away agents exhaust 1,024: queues crash, no new
# connection); version 1 files go through the handle cache (10,000 fit in 960 descriptors)
INBOX_CLASSIC_VERSION = 1


class ExchangeKind(StrEnum):
    TOPIC = "topic"
    DIRECT = "direct"


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    kind: ExchangeKind


@dataclass(frozen=True)
class QueueSpec:
    name: str
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing key)
    single_active: bool = False
    dead_letter: bool = True  # work queues dead-letter; DLQs are the end of the line
    delay_ms: int | None = None  # a delay queue: TTL, then dead-letter to requeue
    expires_ms: int | None = None
    classic_exclusive: bool = False  # a client's private reply queue
    extra: dict[str, Any] = field(default_factory=dict)
    # bindings an earlier release declared and this one removes at declare (rolling upgrades)
    retired: tuple[tuple[str, str], ...] = ()
    # "classic" (durable, version 2) or "quorum"; a queue's type cannot change on redeclare, so
    # one an earlier release created as ``earlier_type`` keeps that type (and its arguments)
    queue_type: str = "quorum"
    earlier_type: str | None = None
    common_dlq: str | None = None  # a DLQ shared with queues like it; its name is the DL key
    classic_version: int = 2  # x-queue-version of a classic queue

    @property
    def dlq(self) -> str:  # where its dead letters go (an older inbox: ``<name>.dlq``)
        return self.common_dlq or f"{self.name}.dlq"


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


def event_routing_key(category: str, event_type: str) -> str:
    """The events exchange's routing key for an event of a stream category (``task``)."""
    return f"{category}.{event_type}"


def event_subscribed(category: str, event_type: str) -> bool:
    """Does any queue of this topology subscribe to this event (``"task"``, ``"TaskReady"``)?

    The outbox relay asks before publishing, so nothing goes out unroutable.
    """
    return _event_subscribed(event_routing_key(category, event_type))


_subscribed_cache: dict[str, bool] = {}


def _event_subscribed(key: str) -> bool:
    known = _subscribed_cache.get(key)
    if known is None:
        known = any(topic_matches(p, key) for p in EVENT_SUBSCRIPTIONS)
        _subscribed_cache[key] = known
    return known


def tier_name(ms: int) -> str:
    return f"t{ms}ms"


def pick_tier(delay_s: float) -> int:
    """The tier that gets a message closest to its delay without overshooting much."""
    wanted = max(0, int(delay_s * 1000))
    for ms in DELAY_TIERS_MS:
        if ms >= wanted:
            return ms
    return DELAY_TIERS_MS[-1]


@dataclass(frozen=True)
class Topology:
    namespace: str = "rally"
    # where a new quorum queue's replicas go (broker/placement.py): how many, and its leader
    # on the node with fewest leaders ("balanced") rather than the declaring one; None: as
    # RabbitMQ decides (a one-node broker)
    quorum_size: int | None = None
    leader_locator: str | None = None
    inbox_type: str = "classic"  # "quorum" on a cluster: see BrokerSettings.inbox_queue_type

    # ---- exchanges ----
    @property
    def commands(self) -> str:
        return f"{self.namespace}.commands"

    @property
    def events(self) -> str:
        return f"{self.namespace}.events"

    @property
    def inbox(self) -> str:
        return f"{self.namespace}.inbox"

    @property
    def retry(self) -> str:
        return f"{self.namespace}.retry"

    @property
    def requeue(self) -> str:
        return f"{self.namespace}.requeue"

    @property
    def dlx(self) -> str:
        return f"{self.namespace}.dlx"

    @property
    def shared_dlq(self) -> str:
        """Dead letters of queues without their own DLQ (clients' private inboxes)."""
        return f"{self.namespace}.clients.dlq"

    @property
    def inbox_dlq(self) -> str:  # one for all inboxes: one each doubled the queues, all empty
        return f"{self.namespace}.inboxes.dlq"

    def dead_letter_key(self, spec: QueueSpec) -> str:
        return spec.common_dlq or (spec.name if spec.dead_letter else self.shared_dlq)

    def exchanges(self) -> list[ExchangeSpec]:
        return [
            ExchangeSpec(self.commands, ExchangeKind.TOPIC),
            ExchangeSpec(self.events, ExchangeKind.TOPIC),
            ExchangeSpec(self.inbox, ExchangeKind.DIRECT),
            ExchangeSpec(self.retry, ExchangeKind.TOPIC),
            ExchangeSpec(self.requeue, ExchangeKind.TOPIC),
            ExchangeSpec(self.dlx, ExchangeKind.DIRECT),
        ]

    def resolve_exchange(self, logical: str) -> str:
        """Map a logical name used in the outbox ("events", "inbox", "commands") to the exchange."""
        if logical.startswith(f"{self.namespace}."):
            return logical
        return f"{self.namespace}.{logical}"

    # ---- queues ----
    def worker_queue(self, worker: str) -> str:
        return f"{self.namespace}.q.{worker}"

    def work_queue(
        self,
        worker: str,
        *,
        command_keys: tuple[str, ...] = (),
        event_keys: tuple[str, ...] = (),
        single_active: bool = False,
    ) -> QueueSpec:
        keys = command_keys or (f"{worker}.#",)
        bindings = tuple((self.commands, k) for k in keys) + tuple(
            (self.events, k) for k in event_keys
        )
        return QueueSpec(self.worker_queue(worker), bindings, single_active=single_active)

    def registry_queue(self, shard: int = 0, shards: int = 1) -> QueueSpec:
        """Registry shard ``shard`` of ``shards``: single active, bound to the slots it owns.

        One shard keeps the one queue and its ``registry.#`` binding (slotted and unslotted
        keys alike). With more, shard 0 keeps that queue's name and also takes the unslotted
        keys, and each binding a shard does not own is retired at declare, so a change of the
        shard count moves slots rather than copying them.
        """
        if shards == 1:
            owned: tuple[str, ...] = ("registry.#",)
            retired = tuple(f"registry.*.{s}" for s in range(SLOTS))
        else:
            mine = slots_of_shard(shard, shards)
            owned = tuple(f"registry.*.{s}" for s in mine)
            if shard == 0:
                owned += tuple(f"registry.{t}" for t in REGISTRY_COMMAND_TYPES)
            others = (f"registry.*.{s}" for s in range(SLOTS) if s not in mine)
            retired = ("registry.#", *others)
        return QueueSpec(
            self.registry_queue_name(shard),
            tuple((self.commands, k) for k in owned),
            single_active=True,
            retired=tuple((self.commands, k) for k in retired),
        )

    def registry_queue_name(self, shard: int = 0) -> str:
        """Shard 0 keeps the one registry queue's name (earlier releases'); shard k adds .k"""
        return self.worker_queue("registry") + (f".{shard}" if shard else "")

    def registry_queues(self, shards: int) -> list[str]:
        return [self.registry_queue_name(k) for k in range(shards)]  # shard 0 first

    def allocator_queue(self) -> QueueSpec:
        """The allocator's one queue: its commands and the events it follows."""
        spec = self.work_queue(
            "allocator",
            command_keys=ALLOCATOR_COMMAND_KEYS,
            event_keys=ALLOCATOR_EVENT_KEYS,
            single_active=True,
        )
        retired = tuple((self.commands, k) for k in ALLOCATOR_RETIRED_COMMAND_KEYS)
        return replace(spec, retired=retired)

    def dashboard_tap_queue(self, tap_id: str) -> QueueSpec:
        """A dashboard's private copy of the heartbeats; it takes nothing from the registry.

        Classic, exclusive and unacknowledged: it disappears with the dashboard's
        connection, and a bounded length (oldest dropped) keeps a stalled dashboard
        from piling up messages in the broker.
        """
        return QueueSpec(
            f"{self.namespace}.dashboard.{tap_id}",
            tuple((self.commands, k) for k in DASHBOARD_TAP_KEYS),
            dead_letter=False,
            classic_exclusive=True,
            extra={"x-max-length": DASHBOARD_TAP_MAX_LENGTH, "x-overflow": "drop-head"},
        )

    def inbox_queue(self, recipient: str) -> QueueSpec:
        return QueueSpec(
            f"{self.namespace}.inbox.{recipient}",
            ((self.inbox, recipient),),
            expires_ms=INBOX_EXPIRES_MS,
            # one per agent: a quorum queue (a Raft group, its own WAL and segments) each is too
            # much for one broker; on a cluster an inbox must outlive its node (protocol.md)
            queue_type=self.inbox_type,
            earlier_type="quorum" if self.inbox_type == "classic" else "classic",
            common_dlq=self.inbox_dlq,
            classic_version=INBOX_CLASSIC_VERSION,
        )

    def client_queue(self, client_id: str) -> QueueSpec:
        return QueueSpec(
            f"{self.namespace}.client.{client_id}",
            ((self.inbox, client_id),),
            dead_letter=False,
            classic_exclusive=True,
        )

    def delay_queues(self) -> list[QueueSpec]:
        return [
            QueueSpec(
                f"{self.namespace}.delay.{tier_name(ms)}",
                ((self.retry, f"{tier_name(ms)}.#"),),
                dead_letter=False,
                delay_ms=ms,
            )
            for ms in DELAY_TIERS_MS
        ]

    def retry_binding_key(self, queue: str) -> str:
        return f"*.{queue}"

    def retry_routing_key(self, tier_ms: int, queue: str) -> str:
        return f"{tier_name(tier_ms)}.{queue}"

    def dlq_arguments(self, spec: QueueSpec, queue_type: str | None = None) -> dict[str, Any]:
        """A dead-letter queue is of its work queue's type (or ``queue_type``)."""
        if (queue_type or spec.queue_type) == "classic":
            return dict(CLASSIC)
        return {"x-queue-type": "quorum"}

    def queue_arguments(self, spec: QueueSpec, delivery_limit: int) -> dict[str, Any]:
        if spec.classic_exclusive:
            return dict(spec.extra)
        if spec.queue_type == "classic":
            return self._classic_arguments(spec)
        args: dict[str, Any] = {"x-queue-type": "quorum"}
        if self.quorum_size is not None:
            args["x-quorum-initial-group-size"] = self.quorum_size
        if self.leader_locator is not None:
            args["x-queue-leader-locator"] = self.leader_locator
        if spec.dead_letter:
            args |= {
                "x-delivery-limit": delivery_limit,
                "x-dead-letter-exchange": self.dlx,
                "x-dead-letter-routing-key": self.dead_letter_key(spec),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        if spec.delay_ms is not None:
            args.update(
                {
                    "x-message-ttl": spec.delay_ms,
                    "x-dead-letter-exchange": self.requeue,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }
            )
        if spec.single_active:
            args["x-single-active-consumer"] = True
        if spec.expires_ms is not None:
            args["x-expires"] = spec.expires_ms
        args.update(spec.extra)
        return args

    def _classic_arguments(self, spec: QueueSpec) -> dict[str, Any]:
        # no x-delivery-limit nor at-least-once dead-lettering: quorum queues' alone
        args: dict[str, Any] = CLASSIC | {"x-queue-version": spec.classic_version}
        if spec.dead_letter:
            args["x-dead-letter-exchange"] = self.dlx
            args["x-dead-letter-routing-key"] = self.dead_letter_key(spec)
            args["x-overflow"] = "reject-publish"
        if spec.expires_ms is not None:
            args["x-expires"] = spec.expires_ms
        return args | spec.extra
