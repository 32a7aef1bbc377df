"""Facts about dead letters an operator acted on: replayed, refused, purged — and by whom.

They are recorded in the history (stream ``deadletter-<id>``) so that who touched
which dead letter, when and how survives the archive row itself. ``by`` is the
operator (``user@host`` or what ``--by`` said), not the broker user.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from contracts.base import Event


class DeadLetterReplayed(Event):
    """A dead letter was published again and the broker confirmed it."""

    dead_letter_id: str = Field(min_length=1, max_length=64)
    replay_id: UUID = Field(description="one `rally dlq replay` run; shared by what it replayed")
    queue: str = Field(max_length=255, description="the queue it had died in")
    reason: str = Field(max_length=64, description="why it had died")
    message_id: str | None = Field(default=None, max_length=255)
    message_type: str | None = Field(default=None, max_length=255)
    exchange: str = Field(max_length=255, description="where it was published")
    routing_key: str = Field(max_length=255)
    edited: bool = Field(default=False, description="the operator changed the body first")
    by: str = Field(min_length=1, max_length=200)
    replayed_at: datetime


class DeadLetterReplayRefused(Event):
    """A replay was refused before publishing: the message still breaks its contract."""

    dead_letter_id: str = Field(min_length=1, max_length=64)
    replay_id: UUID
    queue: str = Field(max_length=255)
    refusal: str = Field(max_length=64, description="contract reason, e.g. invalid")
    detail: str = Field(max_length=4000)
    edited: bool = False
    by: str = Field(min_length=1, max_length=200)
    refused_at: datetime


class DeadLetterPurged(Event):
    """An operator decided a dead letter will never be replayed."""

    dead_letter_id: str = Field(min_length=1, max_length=64)
    queue: str = Field(max_length=255)
    reason: str = Field(max_length=64)
    message_id: str | None = Field(default=None, max_length=255)
    message_type: str | None = Field(default=None, max_length=255)
    by: str = Field(min_length=1, max_length=200)
    purged_at: datetime
