"""Both stores, from the store tests' fixtures."""

from tests.store.conftest import (
    any_store_url,
    opened,
    pg_server_url,
    pg_url,
    sqlite_url,
)

__all__ = ["any_store_url", "opened", "pg_server_url", "pg_url", "sqlite_url"]
