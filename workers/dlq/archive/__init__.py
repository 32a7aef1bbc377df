"""The dead-letter archive: a Protocol and two adapters, chosen by the store URL."""

from __future__ import annotations

from workers.dlq.archive.base import (
    AmbiguousId,
    ArchiveError,
    ArchiveUnavailable,
    DeadLetterArchive,
    NotFound,
)
from workers.store import default_store_url


def default_archive_url() -> str:
    """The event store's URL (RALLY_STORE_URL): the archive lives beside the history."""
    return default_store_url()


def open_archive(url: str | None = None) -> DeadLetterArchive:
    """The adapter for a store URL, read as the event store reads it: ``sqlite:///rel.db``,
    ``sqlite:////abs.db``, ``sqlite:///:memory:``, a bare path, or ``postgresql://…``
    (``?schema=NAME`` too). Not started: call ``await archive.start()``."""
    url = url or default_archive_url()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme == "sqlite":
        from workers.dlq.archive.sqlite import SqliteArchive

        if not sep:
            return SqliteArchive(url)
        if not rest.startswith("/"):
            raise ArchiveError(f"sqlite URL needs three slashes: sqlite:///path, got {url!r}")
        return SqliteArchive(rest[1:] or ":memory:")
    if scheme in ("postgres", "postgresql"):
        from workers.dlq.archive.postgres import PostgresArchive

        return PostgresArchive(url)
    raise ArchiveError(f"no dead-letter archive for {scheme!r} URLs (sqlite or postgresql)")


__all__ = [
    "AmbiguousId",
    "ArchiveError",
    "ArchiveUnavailable",
    "DeadLetterArchive",
    "NotFound",
    "default_archive_url",
    "open_archive",
]
