"""Where a report lands: ``<UTC timestamp>.json``, ``latest.json`` and ``latest.png``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workers.bench.chart import write_chart


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def write_results(report: dict[str, Any], out: Path, stamp: str) -> dict[str, Path | None]:
    """The JSON first, so a chart that cannot be drawn loses no figure; its path is then None."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    stamped, latest = out / f"{stamp}.json", out / "latest.json"
    stamped.write_text(text)
    latest.write_text(text)
    chart: Path | None = out / "latest.png"
    try:
        write_chart(report, out / "latest.png")
    except ModuleNotFoundError:
        print(
            "rally bench: no chart: matplotlib is not installed (pip install 'rallypoint[bench]')",
            file=sys.stderr,
        )
        chart = None
    return {"json": stamped, "latest_json": latest, "chart": chart}
