"""The cyclic garbage collector, set for a worker process.

A worker makes many short-lived objects per message (envelopes, events, rows,
futures). With Python's defaults the collector looks at the young ones every
700 net allocations and, every hundred of those, at everything — the whole
heap of imported modules included. In `rally bench --tasks 6000` runs
alternated in one sitting, Python's defaults against these gave 849, 911 and
910 against 1,045, 989 and 988 tasks/s (about +9%; an earlier sitting showed
936-940 against 1,062-1,104), with peak RSS the same within a few MiB. So a
worker freezes what it loaded at start (out of the collector's sight for
good) and collects less often.

``RALLY_GC_THRESHOLDS``: three numbers as ``gc.set_threshold`` takes them
(default ``20000,50,100``), or ``python`` to leave Python's own.
"""

from __future__ import annotations

import gc

DEFAULT = (20_000, 50, 100)


def thresholds(spec: str | None) -> tuple[int, int, int] | None:
    """What ``RALLY_GC_THRESHOLDS`` asks for: thresholds, or None for Python's own."""
    if spec is None or not spec.strip():
        return DEFAULT
    if spec.strip().lower() == "python":
        return None
    parts = spec.split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or values[0] < 1 or min(values) < 0:
        raise ValueError(
            f"RALLY_GC_THRESHOLDS={spec!r}: give three whole numbers like 20000,50,100 "
            "(the first at least 1), or 'python'"
        )
    return values[0], values[1], values[2]


def apply(spec: str | None) -> tuple[int, int, int] | None:
    """Freeze what is loaded now and set the thresholds; returns what was set."""
    chosen = thresholds(spec)
    if chosen is not None:
        gc.freeze()
        gc.set_threshold(*chosen)
    return chosen
