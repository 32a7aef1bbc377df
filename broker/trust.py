"""What the runtime believes of a delivery: only what the broker vouches for.

The broker validates the AMQP ``user_id`` (a publisher cannot set one that differs from its
login). Headers under ``x-rally-`` (attempt, due-at, original user, replay-of, original
exchange and routing key, last error, ...) say things only rallypoint may say, so they are
honoured only on a delivery a *vouched* publisher sent: a service user (broker/identity.py)
or the consumer's own user, whose copies are its own retries. From anyone else they are
dropped on entry, a bundle's members' own headers included, and the first sender is pinned
in ``x-rally-original-user-id`` ("" for anonymous) so a later re-publish under the worker's
user still acts for that sender and nobody else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.identity import AccessPolicy
from contracts.headers import ORIGINAL_USER_ID, REPLAY_OF, reserved


class Trust:
    def __init__(self, policy: AccessPolicy, own_user: str | None) -> None:
        self.policy = policy
        self.own_user = own_user or None

    def vouched(self, user_id: str | None) -> bool:
        """A publisher whose ``x-rally-`` headers are facts, not claims."""
        if user_id and user_id == self.own_user:
            return True
        return self.policy.is_service(user_id or None)

    def admit(self, user_id: str | None, headers: Mapping[str, Any]) -> dict[str, Any]:
        """The headers the runtime may read: as sent if vouched, else without rallypoint's."""
        if self.vouched(user_id):
            return dict(headers)
        admitted = {k: v for k, v in headers.items() if not reserved(k)}
        admitted[ORIGINAL_USER_ID] = user_id or ""
        return admitted

    def acting_user(self, user_id: str | None, headers: Mapping[str, Any]) -> str | None:
        """The broker-validated publisher; for our own retries, the user who first sent it."""
        if user_id and user_id == self.own_user and ORIGINAL_USER_ID in headers:
            return str(headers[ORIGINAL_USER_ID])
        return user_id

    def principal(self, user_id: str | None, headers: Mapping[str, Any]) -> str | None:
        """Who the message acts for, as the broker vouched for it; None: anonymous."""
        user = user_id or None
        if not self.vouched(user):
            return user
        if ORIGINAL_USER_ID in headers:
            return str(headers[ORIGINAL_USER_ID]) or None  # "" marks a first sender nobody knew
        if REPLAY_OF in headers:
            return None  # replayed without a recorded sender: the operator's rights do not pass
        return user

    def is_service(self, principal: str | None) -> bool:
        return self.policy.is_service(principal)

    def keep_user(self, user_id: str | None, headers: dict[str, Any]) -> None:
        """Pin who the copy we re-publish acts for: exactly its principal ("" for nobody), so
        a copy never gains the rights of a vouched publisher that handed it on (another
        service user's forward, an operator's replay of a letter with no recorded sender)."""
        headers[ORIGINAL_USER_ID] = self.principal(user_id, headers) or ""
