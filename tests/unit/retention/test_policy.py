"""Retention settings, read from the environment (pure)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from workers.retention.policy import (
    RetentionSettings,
    SettingError,
    archive_dir,
    parse_duration,
    parse_retention,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43_200), ("7d", 604_800), ("2w", 1_209_600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["0", "forever", "off", "OFF", " never "])
def test_keeping_everything(text: str) -> None:
    assert parse_retention(text) is None
    assert RetentionSettings.from_env({"RALLY_RETENTION": text}).effective_retention is None


def test_defaults() -> None:
    settings = RetentionSettings.from_env({})
    assert settings.retention == timedelta(days=7)
    assert settings.processed_horizon == timedelta(days=1)
    assert settings.archive == Path("var/archive")


@pytest.mark.parametrize("text", ["soon", "7 days", "-1d", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(SettingError):
        parse_duration(text)


def test_archive_locations() -> None:
    assert archive_dir("/srv/archive") == Path("/srv/archive")
    assert archive_dir("file:///srv/rally%20archive") == Path("/srv/rally archive")
    for url in ("s3://bucket/rally", "https://example.com/archive", "file://otherhost/x"):
        with pytest.raises(SettingError):
            archive_dir(url)
