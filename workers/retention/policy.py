"""Retention settings and the horizon of duplicates — pure, no I/O.

``RALLY_RETENTION`` (default ``7d``): an ended task (succeeded, cancelled, dead) whose
last event is older than this leaves the hot store, archived first. ``0``,
``forever`` or ``off`` keep everything.

``RALLY_PROCESSED_HORIZON`` (default ``1d``): how long a handled message's id is
kept to recognise a duplicate. A duplicate of a handled message can arrive:

- after a crash, when the broker redelivers a message whose handling was recorded but
  not acknowledged: as soon as the channel is gone, or once RabbitMQ's
  ``consumer_timeout`` (30 min by default) closes a channel whose handler hangs;
- after a retry, when a handler recorded and then raised: each parked copy comes back
  within the retry horizon (``max(RALLY_RETRY_MAX_S, the largest delay tier)``, 60 s
  by default), at most ``RALLY_MAX_ATTEMPTS`` times (broker/settle.py);
- from an agent's ``ReliableSender`` (sdk/delivery.py), which publishes the same
  envelope again after a connection loss until confirmed — as long as the agent stays
  cut off, without limit;
- not from ``rally dlq replay``: it publishes the dead letter's own message id, but a
  dead letter is a message that was *not* handled, so its first handling is no
  duplicate.

So the floor is ``consumer_timeout + max_attempts × retry horizon`` (35 min by
default); a smaller setting is raised to it. The default of one day also covers
agents cut off for up to a day. A duplicate later than that is still harmless for
tasks: a repeated submit finds its task (by id or idempotency key, while the task is
in the hot store) and a repeated report its task moved on (fencing, attempt). So
retention is never shorter than the horizon either: a task leaves only once no
duplicate can bring it back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from broker.settings import BrokerSettings
from broker.topology import DELAY_TIERS_MS
from workers.readmodels.checkpoint import TABLE as CHECKPOINTS_TABLE
from workers.readmodels.tasks import TABLE as TASKS_TABLE

DEFAULT_RETENTION = "7d"
DEFAULT_PROCESSED_HORIZON = "1d"
DEFAULT_ARCHIVE = "./var/archive"
DEFAULT_INTERVAL = "5m"
CONSUMER_TIMEOUT = timedelta(minutes=30)  # RabbitMQ's default consumer_timeout
KEEP_EVERYTHING = frozenset({"0", "forever", "off", "never", "none"})

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


class SettingError(ValueError):
    """A retention setting that cannot be read."""


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``7d``, ``2w`` or plain seconds."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise SettingError(f"not a duration: {text!r} (use e.g. 90s, 15m, 12h, 7d, 2w)")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


def parse_retention(text: str) -> timedelta | None:
    """None: keep everything."""
    if text.strip().lower() in KEEP_EVERYTHING:
        return None
    value = parse_duration(text)
    return None if value <= timedelta(0) else value


def archive_dir(location: str) -> Path:
    """A path, or a ``file://`` URL. Other URL kinds (s3://, gs://, http://) are not
    supported yet: mount the bucket or ship the directory."""
    scheme, sep, _ = location.partition("://")
    if not sep:
        return Path(location)
    if scheme.lower() != "file":
        raise SettingError(
            f"archive {location!r}: only a directory or a file:// URL is supported, not {scheme}://"
        )
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost"):
        raise SettingError(f"archive {location!r}: a file:// URL names a local path")
    return Path(unquote(parts.path))


def duplicate_floor(broker: BrokerSettings) -> timedelta:
    """The shortest horizon that still catches every duplicate the fleet itself makes
    (crash redelivery and retries; see the module docs)."""
    retry_horizon = max(broker.retry_max_s, DELAY_TIERS_MS[-1] / 1000)
    return CONSUMER_TIMEOUT + timedelta(seconds=broker.max_attempts * retry_horizon)


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    retention: timedelta | None  # None: keep every event
    processed_horizon: timedelta
    archive: Path
    interval: timedelta  # between two runs of the job
    batch: int = 200  # tasks per deletion transaction
    read_model_table: str = TASKS_TABLE  # its rows get ``expired`` when a task leaves
    checkpoints_table: str = CHECKPOINTS_TABLE  # nothing a read model has not applied goes

    @property
    def effective_retention(self) -> timedelta | None:
        """Never shorter than the horizon: see the module docs."""
        if self.retention is None:
            return None
        return max(self.retention, self.processed_horizon)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, broker: BrokerSettings | None = None
    ) -> RetentionSettings:
        env = os.environ if env is None else env
        broker = broker or BrokerSettings.from_env(env)
        horizon = parse_duration(env.get("RALLY_PROCESSED_HORIZON", DEFAULT_PROCESSED_HORIZON))
        return cls(
            retention=parse_retention(env.get("RALLY_RETENTION", DEFAULT_RETENTION)),
            processed_horizon=max(horizon, duplicate_floor(broker)),
            archive=archive_dir(env.get("RALLY_ARCHIVE", DEFAULT_ARCHIVE)),
            interval=parse_duration(env.get("RALLY_RETENTION_INTERVAL", DEFAULT_INTERVAL)),
        )
