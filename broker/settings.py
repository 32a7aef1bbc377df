"""Transport settings, read from RALLY_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broker.nodes import BrokerConfigError, canonical_url, parse_nodes

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class BrokerSettings(BaseModel):
    # hide_input: a rejected RALLY_AMQP_URL would otherwise print its password
    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    # one node, or a cluster's nodes (broker/nodes.py); kept in its canonical spelling
    amqp_url: str = DEFAULT_AMQP_URL
    namespace: str = Field(default="rally", pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    prefetch: int = Field(default=64, ge=1, le=10_000)
    publish_timeout_s: float = Field(default=10.0, gt=0)
    # the AMQP connection heartbeat (RALLY_AMQP_HEARTBEAT_S); agents' own heartbeats are
    # RALLY_HEARTBEAT_S, a worker setting
    amqp_heartbeat_s: int = Field(default=15, ge=0)
    max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    delivery_limit: int = Field(default=10, ge=1, description="crash-redeliveries before DLQ")
    max_attempts: int = Field(default=5, ge=1, description="handler attempts before DLQ")
    retry_initial_s: float = Field(default=0.1, ge=0)
    retry_max_s: float = Field(default=60.0, ge=0)
    # messages for one destination published at the same moment travel as one bundle of up
    # to this many (contracts/bundle.py); 1 sends every message on its own
    bundle_max: int = Field(default=256, ge=1, le=10_000)
    # replicas of each quorum queue at declare (RALLY_QUORUM_SIZE); None: one per node named
    # in amqp_url (RabbitMQ caps it to the cluster's members)
    quorum_size: int | None = Field(default=None, ge=1, le=99)
    # agents' inboxes (RALLY_INBOX_TYPE): None picks classic on one node (10,000 inboxes fit a
    # small broker) and quorum on a cluster (an inbox must outlive the loss of its node)
    inbox_type: Literal["classic", "quorum"] | None = None

    @field_validator("amqp_url")
    @classmethod
    def _one_or_more_nodes(cls, value: str) -> str:
        return canonical_url(value)

    @property
    def amqp_nodes(self) -> tuple[str, ...]:
        """One full URL per broker node, in the order RALLY_AMQP_URL names them."""
        return parse_nodes(self.amqp_url).urls()

    @property
    def inbox_queue_type(self) -> str:
        """The type new agent inboxes are declared with (docs/protocol.md, "Inboxes")."""
        if self.inbox_type is not None:
            return self.inbox_type
        return "quorum" if len(self.amqp_nodes) > 1 else "classic"

    @property
    def quorum_initial_group_size(self) -> int | None:
        """The x-quorum-initial-group-size to declare with; None leaves RabbitMQ's default."""
        if self.quorum_size is not None:
            return self.quorum_size
        nodes = len(self.amqp_nodes)
        return nodes if nodes > 1 else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> BrokerSettings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"RALLY_{name.upper()}"
            if key in env:
                values[name] = env[key]
        if "amqp_url" in values and "amqp_url" not in overrides:
            parse_nodes(str(values["amqp_url"]))  # BrokerConfigError, with the reason
        for optional in ("quorum_size", "inbox_type"):
            if values.get(optional) == "":
                values.pop(optional)
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"RALLY_{str(e['loc'][0]).upper() if e['loc'] else '?'}: {e['msg']}"
                for e in exc.errors()
            )
            raise BrokerConfigError(problems) from None
