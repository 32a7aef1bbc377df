"""Store fixtures: a fresh SQLite file or a fresh PostgreSQL schema per test.

PostgreSQL comes from ``RALLY_TEST_PG_URL`` (default: the local server); if
that does not answer and a Docker engine does, a throw-away container is
started once per session; otherwise PostgreSQL tests are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from workers.store import PostgresEventStore, Publishes, SqliteEventStore, open_store

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

Store = SqliteEventStore | PostgresEventStore


async def _pg_answers(url: str) -> str | None:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def _docker_answers() -> bool:
    try:
        from testcontainers.core.docker_client import DockerClient

        DockerClient().client.ping()
    except Exception:  # no docker socket, no permission, engine down: all mean "no"
        return False
    return True


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    url = os.environ.get("RALLY_TEST_PG_URL", DEFAULT_PG_URL)
    problem = asyncio.run(_pg_answers(url))
    if problem is None:
        yield url
        return
    if not _docker_answers():
        pytest.skip(f"PostgreSQL at {url} does not answer ({problem}) and no Docker engine does")
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield container.get_connection_url()


@pytest.fixture
async def pg_url(pg_server_url: str) -> AsyncIterator[str]:
    """A store URL in a schema of its own, dropped afterwards."""
    schema = f"rally_test_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in pg_server_url else "?"
    yield f"{pg_server_url}{sep}schema={schema}"
    conn = await asyncpg.connect(pg_server_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store_url(request: pytest.FixtureRequest) -> str:
    """Both adapters, for tests that are not part of the contract class."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


class StoreFactory:
    """Opens started stores; the ``opened`` fixture closes them after the test."""

    def __init__(self) -> None:
        self.stores: list[Store] = []

    async def __call__(self, url: str, *, publishes: Publishes | None = None) -> Store:
        store = open_store(url, publishes=publishes)
        await store.start()
        self.stores.append(store)
        return store


@pytest.fixture
async def opened() -> AsyncIterator[StoreFactory]:
    factory = StoreFactory()
    yield factory
    for store in factory.stores:
        await store.close()
