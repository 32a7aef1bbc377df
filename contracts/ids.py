"""Message and event ids: random (version 4) UUIDs, made without a system call.

``uuid.uuid4`` reads 16 bytes from the OS for every id, a system call that showed
up at several percent of a worker's time in profiles (a task makes about a dozen
ids). These ids need to be unique, not secret: Python's Mersenne Twister,
seeded from the OS at start and again in every forked child, gives 122 random
bits per id all the same.
"""

from __future__ import annotations

import random
from uuid import UUID

_bits = random.getrandbits


def new_id() -> UUID:
    return UUID(int=_bits(128), version=4)
