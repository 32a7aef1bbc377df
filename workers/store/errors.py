"""What the event store raises: one root, a few kinds callers act on differently.

- ``ConcurrencyError``: an expected version did not match. Reload and retry.
- ``StoreUnavailable``: the database could not be reached or stayed locked.
  Transient; retry later (the consume wrapper's back-off does).
- ``DuplicateEventId``: an event id was already recorded. A bug in the caller
  (event ids must be fresh), never retried.

Driver errors never leak: adapters translate them at the boundary with
``raise StoreUnavailable(...) from exc`` so callers depend on this module only.
The store knows nothing of the broker: the runner translates ``StoreUnavailable``
for the consumer (``workers.runtime.dependencies.StoreDown``), which then holds the
message until the store is back.
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of everything workers/store raises."""


class ConcurrencyError(StoreError):
    """A stream's current version is not the one the caller expected."""

    def __init__(self, stream: str, expected: int | None, actual: int) -> None:
        super().__init__(f"stream {stream!r}: expected version {expected}, actual {actual}")
        self.stream = stream
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[type[ConcurrencyError], tuple[str, int | None, int]]:
        # Keep the error picklable with its fields (multiprocessing, test workers).
        return (ConcurrencyError, (self.stream, self.expected, self.actual))


class StoreUnavailable(StoreError):
    """The database is down, unreachable, or busy past the time-out. Transient."""


class DuplicateEventId(StoreError):
    """An appended event reuses the id of an event already in the store."""
