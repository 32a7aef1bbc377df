"""A bundle delivery split into its members, each a delivery of its own (contracts/bundle.py).

Members take the bundle's broker-validated user and routing; their own headers are admitted
exactly like a delivery's (broker/trust.py), so a member of an untrusted bundle can claim no
more than the bundle could. The number of members is bounded on receipt: past it the whole
bundle is dead-lettered (``too_large``) before any member costs anything.
"""

from __future__ import annotations

from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from broker.delivery import Delivery
from broker.trust import Trust
from contracts import decode_bundle
from contracts.headers import BUNDLE_COUNT

BUNDLE_SIZE_FACTOR = 16  # a bundle may be this many times the size limit of one message
# members a consumer takes in one bundle (a sender bundles up to RALLY_BUNDLE_MAX, 256 by
# default): enough for any sender's setting up to it, small enough that a bundle of failing
# members settles in a fraction of a second
MIN_MEMBERS_IN = 1024


def member_limit(bundle_max: int) -> int:
    return max(bundle_max, MIN_MEMBERS_IN)


def split(
    message: AbstractIncomingMessage,
    trust: Trust,
    *,
    max_bytes: int,
    max_members: int,
) -> list[Delivery]:
    """The members as deliveries; a :class:`ContractError` if it cannot be split."""
    members = decode_bundle(message.body, max_members=max_members, max_bytes=max_bytes)
    raw = {k: v for k, v in (message.headers or {}).items() if k != BUNDLE_COUNT}
    user_id = message.user_id
    vouched = trust.vouched(user_id)
    shared = trust.admit(user_id, raw)
    exchange, routing_key = message.exchange or "", message.routing_key or ""
    redelivered = bool(message.redelivered)
    out: list[Delivery] = []
    for member in members:
        headers: dict[str, Any]
        if not member.headers:
            headers = dict(shared)
        elif vouched:
            headers = {**shared, **member.headers}
        else:  # the member's own claims go through the same gate as the bundle's
            headers = trust.admit(user_id, {**raw, **member.headers})
        out.append(
            Delivery(
                body=member.body,
                message_id=member.message_id,
                type=member.type,
                correlation_id=member.correlation_id,
                headers=headers,
                user_id=user_id,
                exchange=exchange,
                routing_key=routing_key,
                redelivered=redelivered,
            )
        )
    return out
