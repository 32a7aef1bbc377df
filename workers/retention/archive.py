"""The archive: events as gzip-compressed JSON Lines, the format of `rally events dump`.

One event per line (``workers.cli.events.event_line``: position, stream, version,
type, data, metadata, recorded_at, schema_version, id). ``rally events export``
writes such a file from a store, the retention job one per batch of expired tasks,
and ``rally events import`` (``import_file``) reads any of them back into a store.

Import appends each event at the target store's next position: stream, version,
id, type, schema version, data, metadata and recorded_at are kept, the position is
new (the line's own position is that of the store it came from). An event whose id
the store already holds is skipped, so importing a file twice, or two files that
overlap (a retention run interrupted between its export and its delete exports the
same tasks again), is harmless. An event that is not its stream's next version stops
the import with an error naming it; what was imported before stays. Imported events
get no outbox rows: history coming back is not published again.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from workers.cli.events import LineError, event_from_line, event_line
from workers.store.base import EventStore, RecordedEvent

IMPORT_BATCH = 500


class Importer(Protocol):
    async def import_events(self, events: list[RecordedEvent]) -> tuple[int, int]: ...


class ArchiveError(Exception):
    """A file that cannot be read as an archive."""


@contextlib.contextmanager
def _atomic_gzip(path: Path) -> Iterator[gzip.GzipFile]:
    """A gzip file at ``path``, all or nothing: written to a temporary file, flushed to
    disk, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                yield out
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    _sync_dir(path.parent)  # the rename itself survives a crash


def _write(out: gzip.GzipFile, events: Iterable[RecordedEvent]) -> int:
    written = 0
    for event in events:
        out.write(event_line(event).encode())
        out.write(b"\n")
        written += 1
    return written


def write_file(path: Path, events: Iterable[RecordedEvent]) -> int:
    """Write ``events`` to ``path`` (gzip JSON Lines), all or nothing; how many."""
    with _atomic_gzip(path) as out:
        return _write(out, events)


def read_file(path: Path) -> Iterator[RecordedEvent]:
    """The events of an archive file, gzip or plain (a `rally events dump` output)."""
    with path.open("rb") as probe:
        zipped = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if zipped else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield event_from_line(line)
            except LineError as exc:
                raise ArchiveError(f"{path}:{number}: {exc}") from None


async def export_file(
    store: EventStore,
    path: Path,
    *,
    from_position: int = 0,
    stream_prefix: str | None = None,
    page_size: int = 1000,
) -> int:
    """Every event after ``from_position`` (only streams starting with ``stream_prefix``)
    into ``path``; how many."""
    written = 0
    cursor = from_position
    with _atomic_gzip(path) as out:
        while page := await store.read_all(cursor, page_size, stream_prefix=stream_prefix):
            written += _write(out, page)
            cursor = page[-1].position  # not a count: positions have gaps after retention
    return written


async def import_file(store: Importer, path: Path) -> tuple[int, int]:
    """Append the file's events to ``store`` (see the module docs); (imported, skipped)."""
    imported = skipped = 0
    batch: list[RecordedEvent] = []
    for event in read_file(path):
        batch.append(event)
        if len(batch) >= IMPORT_BATCH:
            done, seen = await store.import_events(batch)
            imported, skipped, batch = imported + done, skipped + seen, []
    if batch:
        done, seen = await store.import_events(batch)
        imported, skipped = imported + done, skipped + seen
    return imported, skipped


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
