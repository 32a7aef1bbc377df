"""Where a report lands: ``<UTC timestamp>.json``, ``latest.json`` and ``latest.png``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workers.bench.chart import write_chart


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def write_results(report: dict[str, Any], out: Path, stamp: str) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    paths = {
        "json": out / f"{stamp}.json",
        "latest_json": out / "latest.json",
        "chart": out / "latest.png",
    }
    paths["json"].write_text(text)
    paths["latest_json"].write_text(text)
    write_chart(report, paths["chart"])
    return paths
