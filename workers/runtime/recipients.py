"""Which inboxes take no bundles: agents that registered with ``bundles: false``.

The relay asks before it publishes notices to the inbox exchange: a notice to such an
agent goes alone, whatever ``RALLY_BUNDLE_MAX`` says. The answer comes from the agent's
own history (``agent-<id>``, through the registry's one fold) in whichever process runs
the relay, cached for a few seconds: a preference changes only when an agent registers
again, and the first notice to an agent follows its ``AgentJoined``.
"""

from __future__ import annotations

import time

from workers.registry.state import fold, stream_of
from workers.runtime.messages import load_event
from workers.store.base import EventStore

CACHE_S = 5.0


class SingleRecipients:
    def __init__(self, store: EventStore, *, cache_s: float = CACHE_S) -> None:
        self.store = store
        self.cache_s = cache_s
        self._known: dict[str, tuple[bool, float]] = {}  # recipient -> (alone, until)

    async def alone(self, recipient: str) -> bool:
        """Whether notices to this inbox must go one per broker message."""
        now = time.monotonic()
        known = self._known.get(recipient)
        if known is not None and known[1] > now:
            return known[0]
        records = await self.store.read(stream_of(recipient))
        agent = fold(recipient, [load_event(r) for r in records])
        alone = agent.status != "new" and not agent.bundles
        self._known[recipient] = (alone, now + self.cache_s)
        return alone
