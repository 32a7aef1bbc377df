"""The dead-letter archive on SQLite (a temp file) and PostgreSQL (a schema of its own).

PostgreSQL is the store fixtures' (``tests/support/fixtures/store.py``): ``RALLY_TEST_PG_URL``
(default: the local server), else a testcontainers PostgreSQL where Docker answers, else
the PostgreSQL cases are skipped, saying why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from workers.dlq.archive import DeadLetterArchive, open_archive


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def archive_url(request: pytest.FixtureRequest) -> str:
    name = "store_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def archive(archive_url: str) -> AsyncIterator[DeadLetterArchive]:
    opened = open_archive(archive_url)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()
