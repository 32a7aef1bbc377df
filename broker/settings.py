"""Transport settings, read from RALLY_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class BrokerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> BrokerSettings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"RALLY_{name.upper()}"
            if key in env:
                values[name] = env[key]
        values.update(overrides)
        return cls.model_validate(values)
