"""Who may act for which agent: the check every worker runs before it handles a message.

The broker validates the AMQP ``user_id`` property (a publisher cannot set one that
differs from its login), and the consumer hands it over as ``Incoming.user_id``. From it:

- a **service user** may send anything and act for any agent. Service users are the
  workers' own broker user (always) and ``RALLY_SERVICE_USERS`` (comma list; default
  ``guest``; an empty value leaves only the workers' own user);
- **any other user** acts for exactly one agent, the one whose id equals its user name
  (``rally agents provision ID`` creates the user ``ID``). It may send the commands that
  claim an agent (``agent_id`` in the payload) only for that agent, may submit tasks whose
  outcome goes to no inbox or to its own, and may cancel tasks;
- a message **without a user_id** is anonymous: it may submit and cancel, nothing else
  (the SDK always sets user_id; a publisher that leaves it out cannot be told apart).

Every other message type (timers, dependency resolutions, resource declarations, events,
notices) is for service users only: a type nobody listed here is refused by default.

Retries and replays keep the first sender. The consumer's own retries carry
``x-rally-original-user-id``, trusted only when a service user published the copy; a
replay (``x-rally-replay-of``) by a service user that carries no original user acts as
anonymous, never with the replaying operator's rights.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog

from broker.deadletter import ORIGINAL_USER_ID
from broker.errors import Reject
from broker.router import Incoming
from contracts import (
    AcquireLease,
    CancelTask,
    DeregisterAgent,
    Heartbeat,
    Message,
    QueryTask,
    RegisterAgent,
    RejectAssignment,
    ReleaseLease,
    RenewLease,
    ReportTaskFailed,
    ReportTaskProgress,
    ReportTaskStarted,
    ReportTaskSucceeded,
    SubmitTask,
)
from contracts.headers import REPLAY_OF as REPLAY_OF  # set by `rally dlq replay`

log = structlog.get_logger(__name__)

SERVICE_USERS_ENV = "RALLY_SERVICE_USERS"
DEFAULT_SERVICE_USERS: tuple[str, ...] = ("guest",)
SECURITY = "security"  # the dead-letter reason of a refused message


class Access(StrEnum):
    AGENT = "agent"  # claims an agent in payload.agent_id: that agent's user, or a service user
    OPEN = "open"  # anyone, anonymous included
    SERVICE = "service"  # service users only


AGENT_MESSAGES: frozenset[type[Message]] = frozenset(
    {
        RegisterAgent,
        Heartbeat,
        DeregisterAgent,
        ReportTaskStarted,
        ReportTaskProgress,
        ReportTaskSucceeded,
        ReportTaskFailed,
        RejectAssignment,
        AcquireLease,
        RenewLease,
        ReleaseLease,
    }
)
OPEN_MESSAGES: frozenset[type[Message]] = frozenset({SubmitTask, CancelTask, QueryTask})


def access_of(message_type: type[Message]) -> Access:
    if message_type in AGENT_MESSAGES:
        return Access.AGENT
    if message_type in OPEN_MESSAGES:
        return Access.OPEN
    return Access.SERVICE


def service_users_from_env(env: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if env is None else env
    raw = env.get(SERVICE_USERS_ENV)
    names = DEFAULT_SERVICE_USERS if raw is None else raw.split(",")
    return frozenset(n.strip() for n in names if n.strip())


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    service_users: frozenset[str]
    own_user: str | None  # the workers' broker user; None when RALLY_AMQP_URL names none
    # whether a message without user_id counts as a service user's; None: only when the
    # workers do not know their own user (see is_service)
    anonymous_service: bool | None = None

    @classmethod
    def from_env(cls, own_user: str | None, env: Mapping[str, str] | None = None) -> AccessPolicy:
        return cls(service_users_from_env(env), own_user or None)

    @classmethod
    def for_clients(cls, env: Mapping[str, str] | None = None) -> AccessPolicy:
        """What an agent or client trusts: ``RALLY_SERVICE_USERS`` only, never anonymous."""
        return cls(service_users_from_env(env), None, anonymous_service=False)

    @property
    def trusted(self) -> frozenset[str]:
        return self.service_users | ({self.own_user} if self.own_user else set())

    def is_service(self, user: str | None) -> bool:
        if not user:
            if self.anonymous_service is not None:
                return self.anonymous_service
            # workers that do not know their own user name publish without user_id
            # themselves: anonymous cannot be told from them, so it cannot be refused
            return self.own_user is None
        return user in self.trusted

    def sender(self, user_id: str | None, headers: Mapping[str, Any]) -> str | None:
        """Who a delivery acts for: its publisher, or a first sender a service user vouches for."""
        user = user_id or None
        if not self.is_service(user):
            return user  # a header from anyone else is a claim, not a fact
        if ORIGINAL_USER_ID in headers:
            return str(headers[ORIGINAL_USER_ID]) or None  # "" marks a first sender nobody knew
        if REPLAY_OF in headers:
            return None  # replayed without a recorded sender: the operator's rights do not pass
        return user

    def refusal(self, sender: str | None, payload: Message) -> str | None:
        """Why ``sender`` may not send ``payload``; None when it may."""
        if self.is_service(sender):
            return None
        kind = payload.type_name()
        who = f"broker user {sender!r}" if sender else "a message without user_id"
        access = access_of(type(payload))
        if access is Access.SERVICE:
            return (
                f"{who} may not send {kind}: only service users may "
                f"({SERVICE_USERS_ENV} or the workers' own user)"
            )
        if access is Access.AGENT:
            claimed = str(getattr(payload, "agent_id", ""))
            if claimed != sender:
                return (
                    f"{who} may not act for agent {claimed!r} ({kind}): "
                    "a broker user acts only for the agent whose id is its user name"
                )
        if isinstance(payload, SubmitTask) and payload.reply_to not in (None, sender):
            return (
                f"{who} may not send the outcome of a task to inbox {payload.reply_to!r}: "
                "only to its own or to none"
            )
        return None


def authorizer(policy: AccessPolicy) -> Callable[[Incoming[Any]], None]:
    """The Consumer's ``authorize`` hook: raises Reject(reason="security") to dead-letter."""

    def authorize(incoming: Incoming[Any]) -> None:
        sender = policy.sender(incoming.user_id, incoming.headers)
        refusal = policy.refusal(sender, incoming.payload)
        if refusal is not None:
            log.warning(
                "security.refused",
                sender=sender,
                broker_user=incoming.user_id,
                msg_type=incoming.envelope.type,
                error=refusal,
            )
            raise Reject(refusal, reason=SECURITY)

    return authorize


def worker_authorizer(
    own_user: str | None, env: Mapping[str, str] | None = None
) -> Callable[[Incoming[Any]], None]:
    """What each worker passes as ``Consumer(authorize=...)``."""
    policy = AccessPolicy.from_env(own_user, env)
    if policy.own_user is None:
        log.warning(
            "security.identity_unchecked",
            error="RALLY_AMQP_URL names no user: messages without user_id are trusted",
        )
    return authorizer(policy)


def reserved_users(own_user: str | None, env: Mapping[str, str] | None = None) -> Iterable[str]:
    """Names `rally agents provision` must never turn into agent users."""
    return AccessPolicy.from_env(own_user, env).trusted
