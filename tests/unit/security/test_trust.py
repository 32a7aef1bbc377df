"""What a copy re-published by a worker (a retry, a forward) acts for: its principal, never more."""

from __future__ import annotations

from typing import Any

from broker.identity import AccessPolicy
from broker.trust import Trust
from contracts.headers import ORIGINAL_USER_ID, REPLAY_OF

TRUST = Trust(AccessPolicy(frozenset({"ops"}), "workers"), "workers")


def pinned(user_id: str | None, headers: dict[str, Any]) -> str:
    admitted = TRUST.admit(user_id, headers)
    TRUST.keep_user(user_id, admitted)
    return str(admitted[ORIGINAL_USER_ID])


def test_a_plain_senders_copy_acts_for_that_sender() -> None:
    assert pinned("agent-7", {}) == "agent-7"
    assert pinned("agent-7", {ORIGINAL_USER_ID: "ops"}) == "agent-7"  # its claim is dropped


def test_an_anonymous_copy_stays_anonymous() -> None:
    assert pinned(None, {}) == ""


def test_a_copy_another_service_user_handed_on_keeps_its_first_sender() -> None:
    # before, only our own user's copies kept the first sender: this one acted as "ops"
    assert pinned("ops", {ORIGINAL_USER_ID: "agent-7"}) == "agent-7"
    assert pinned("workers", {ORIGINAL_USER_ID: "agent-7"}) == "agent-7"


def test_a_replay_with_no_recorded_sender_does_not_gain_the_operators_rights() -> None:
    assert pinned("ops", {REPLAY_OF: "letter-1"}) == ""
    retried = {REPLAY_OF: "letter-1", ORIGINAL_USER_ID: pinned("ops", {REPLAY_OF: "letter-1"})}
    assert TRUST.principal("workers", retried) is None


def test_a_service_users_own_command_acts_for_it() -> None:
    assert pinned("ops", {}) == "ops"
    assert pinned("workers", {}) == "workers"
