"""What an agent's own broker user may touch: the permission model behind `rally agents provision`.

RabbitMQ authorises with three regular expressions per user and vhost — configure,
write, read — matched against exchange and queue names, and on a topic exchange with
two more matched against the routing key. An agent ``<id>`` in namespace ``<ns>`` gets::

    configure  ^$                       nothing: its inbox is declared for it at provisioning
    write      ^<ns>\\.commands$         the one exchange it publishes to
    read       ^<ns>\\.inbox\\.<id>$      its own inbox, to consume it
    topic      <ns>.commands  write ^(registry|tasks|allocator)\\.   read ^$

So it cannot publish to the default exchange (``amq.default``), nor to the events,
inbox, retry or dead-letter exchanges, nor consume any queue but its own inbox.

Why it does not declare its own inbox (measured on RabbitMQ 3.10, see docs/security.md):
declaring a queue that has a dead-letter exchange needs *write* on that exchange, which
would let the agent forge dead letters into every work queue's DLQ; and binding a queue
needs *read* on the source exchange, which would let it bind its queue to the inbox
exchange with another agent's routing key and receive copies of that agent's assignments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from broker.topology import Topology

AGENT_ROUTES: tuple[str, ...] = ("registry", "tasks", "allocator")  # what agents send commands to
NOTHING = "^$"  # a pattern no exchange or queue name matches (names are never empty here)
_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")  # contracts.fields.AgentId
_PCRE_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


class NotProvisionable(ValueError):
    """This agent id cannot be given a broker user of its own."""


def literal(name: str) -> str:
    """A pattern that matches exactly ``name`` (the escapes are the same in PCRE and Python)."""
    return "^" + _PCRE_SPECIAL.sub(r"\\\1", name) + "$"


@dataclass(frozen=True, slots=True)
class TopicGrant:
    exchange: str
    write: str
    read: str


@dataclass(frozen=True, slots=True)
class AgentGrant:
    """Everything one agent's broker user is allowed, in one vhost."""

    agent_id: str
    vhost: str
    inbox: str
    configure: str
    write: str
    read: str
    topic: TopicGrant

    @property
    def user(self) -> str:
        # the mapping workers rely on (broker/identity.py): broker user name == agent id
        return self.agent_id


def broker_user(amqp_url: str) -> str | None:
    """The user an AMQP URL logs in as, decoded as the broker sees it."""
    return unquote(urlsplit(amqp_url).username or "") or None


def has_own_user(amqp_url: str, agent_id: str) -> bool:
    """Whether an agent logs in as its own provisioned user, which may declare nothing."""
    return broker_user(amqp_url) == agent_id


def agent_grant(agent_id: str, topology: Topology, *, vhost: str = "/") -> AgentGrant:
    inbox = topology.inbox_queue(agent_id).name
    routes = "|".join(AGENT_ROUTES)
    return AgentGrant(
        agent_id=agent_id,
        vhost=vhost,
        inbox=inbox,
        configure=NOTHING,
        write=literal(topology.commands),
        read=literal(inbox),
        topic=TopicGrant(exchange=topology.commands, write=rf"^({routes})\.", read=NOTHING),
    )


def check_provisionable(agent_id: str, *, reserved: Iterable[str]) -> None:
    """Refuse ids that are not agent ids, that name a service user, or whose inbox collides."""
    if not _AGENT_ID.match(agent_id):
        raise NotProvisionable(
            f"{agent_id!r} is not an agent id: letters, digits and _.:@- (max 128), "
            "starting with a letter or digit"
        )
    if agent_id in set(reserved):
        raise NotProvisionable(
            f"{agent_id!r} is a service user (RALLY_SERVICE_USERS, or the user of "
            "RALLY_AMQP_URL): provisioning would take away its rights"
        )
    if agent_id.endswith(".dlq"):
        # the inbox of "x.dlq" would be the dead-letter queue of agent x's inbox
        raise NotProvisionable(
            f"{agent_id!r} ends with '.dlq': its inbox would be another agent's dead-letter queue"
        )
