"""Worker settings, read from RALLY_* environment variables next to the broker's."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.settings import BrokerSettings
from contracts.shards import SLOTS
from workers.store import default_store_url

WORKERS: tuple[str, ...] = ("registry", "tasks", "allocator")


class WorkerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    store_url: str = Field(default_factory=default_store_url)
    # registry: an agent silent for lost_after_factor × its heartbeat interval is lost
    heartbeat_s: float = Field(default=5.0, gt=0, description="default heartbeat interval")
    lost_after_factor: float = Field(default=3.0, ge=1)
    sweep_interval_s: float = Field(default=0.5, gt=0)
    # registry shards (contracts/shards.py): this process is shard ``registry_shard`` of
    # ``registry_shards`` and owns the agents whose slot % registry_shards == registry_shard
    registry_shards: int = Field(default=1, ge=1, le=SLOTS, description="RALLY_REGISTRY_SHARDS")
    registry_shard: int = Field(default=0, ge=0, description="RALLY_REGISTRY_SHARD")
    # tasks
    max_result_bytes: int = Field(default=1024 * 1024, ge=1)
    conflict_attempts: int = Field(default=5, ge=1, description="reload-and-decide rounds")
    # allocator
    resources: dict[str, int] = Field(
        default_factory=dict, description="resources declared by configuration: name → capacity"
    )
    rejection_cooldown_s: float = Field(default=1.0, ge=0)
    # the outbox relay
    relay_claim_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _shard_in_range(self) -> WorkerSettings:
        if self.registry_shard >= self.registry_shards:
            raise ValueError(
                f"RALLY_REGISTRY_SHARD={self.registry_shard} is not a shard of "
                f"RALLY_REGISTRY_SHARDS={self.registry_shards}: it must be 0.."
                f"{self.registry_shards - 1}"
            )
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> WorkerSettings:
        env = os.environ if env is None else env
        values: dict[str, object] = {"broker": BrokerSettings.from_env(env)}
        for name in cls.model_fields:
            key = f"RALLY_{name.upper()}"
            if name == "broker" or key not in env:
                continue
            values[name] = _parse_resources(env[key]) if name == "resources" else env[key]
        values.update(overrides)
        return cls.model_validate(values)


def _parse_resources(text: str) -> dict[str, int]:
    """``gpu=2,openai-quota=10`` → {"gpu": 2, "openai-quota": 10}."""
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, capacity = item.partition("=")
        out[name.strip()] = int(capacity or "1")
    return out
