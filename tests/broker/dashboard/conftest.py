"""The dashboard's fixtures (tests/support/fixtures/dashboard.py): a fleet, agents, the site."""

from tests.support.fixtures.dashboard import (  # noqa: F401 - the fixtures, reused
    agents,
    client,
    dashboard,
    fleet,
    site,
)
