"""The contract, once per adapter."""

from __future__ import annotations

import pytest

from tests.store.eventstore.contract import EventStoreContract


class TestSqliteStore(EventStoreContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestPostgresStore(EventStoreContract):
    @pytest.fixture
    def store_url(self, pg_url: str) -> str:
        return pg_url
