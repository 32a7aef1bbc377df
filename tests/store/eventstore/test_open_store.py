"""Choosing the adapter is one URL (one environment variable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.store import (
    DEFAULT_STORE_URL,
    NewEvent,
    PostgresEventStore,
    SqliteEventStore,
    StoreError,
    StoreUnavailable,
    default_store_url,
    open_store,
)
from workers.store.postgres import split_schema


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///./var/rally.db", "./var/rally.db"),
        ("sqlite:////tmp/x/rally.db", "/tmp/x/rally.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("var/other.db", "var/other.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    store = open_store(url)
    assert isinstance(store, SqliteEventStore)
    assert store.path == path


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h:5433/db?sslmode=disable"])
def test_postgres_urls(url: str) -> None:
    assert isinstance(open_store(url), PostgresEventStore)


def test_schema_parameter_is_ours_and_the_rest_goes_to_asyncpg() -> None:
    dsn, schema = split_schema("postgresql://u@h/db?sslmode=disable&schema=rally")
    assert (dsn, schema) == ("postgresql://u@h/db?sslmode=disable", "rally")
    assert split_schema("postgresql://u@h/db") == ("postgresql://u@h/db", None)


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://relative.db"])
def test_unknown_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError):
        open_store(url)


def test_default_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RALLY_STORE_URL", raising=False)
    assert default_store_url() == DEFAULT_STORE_URL == "sqlite:///./var/rally.db"
    monkeypatch.setenv("RALLY_STORE_URL", "postgresql://db/rally")
    assert default_store_url() == "postgresql://db/rally"
    assert isinstance(open_store(), PostgresEventStore)


async def test_default_sqlite_store_creates_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RALLY_STORE_URL", raising=False)
    store = open_store()
    await store.start()
    try:
        await store.append("task-1", 0, [NewEvent("Happened", {})])
    finally:
        await store.close()
    assert (tmp_path / "var" / "rally.db").exists()


async def test_in_memory_store_works() -> None:
    store = open_store("sqlite:///:memory:")
    await store.start()
    try:
        await store.append("task-1", 0, [NewEvent("Happened", {})])
        assert await store.stream_version("task-1") == 1
        assert len(await store.read_all()) == 1
    finally:
        await store.close()


async def test_an_unreachable_database_is_store_unavailable(tmp_path: Path) -> None:
    # Driver errors never leak: callers catch StoreUnavailable and retry later.
    with pytest.raises(StoreUnavailable):
        await open_store("postgresql://postgres@127.0.0.1:1/nowhere").start()
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        await open_store(f"sqlite:///{tmp_path}/file/rally.db").start()
