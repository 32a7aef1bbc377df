"""Header names, re-exported from their one home, contracts/headers.py (``h.ATTEMPT`` and so on)."""

from contracts.headers import *  # noqa: F403  # the wire protocol's list, under the old name
