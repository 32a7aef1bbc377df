"""Agents with broker users of their own (tests/support/rabbit_users.py), deleted after."""

from tests.support.rabbit_users import users  # noqa: F401 - the fixture, reused
