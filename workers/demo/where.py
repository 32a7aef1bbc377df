"""Where a demo run keeps what it leaves behind: its store, and how to look at it afterwards.

Every run gets a store of its own, so its history check sees only its own events and the
history stays there to explore: a file of its own beside the one ``RALLY_STORE_URL`` names
(or under ``var/demo/<namespace>/`` by default), or a schema of its own in the PostgreSQL
database it names.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

STORE_ENV = "RALLY_STORE_URL"


def run_store_url(env: Mapping[str, str], run_dir: Path, namespace: str) -> str:
    """The store URL of one run, derived from ``RALLY_STORE_URL`` when it is set."""
    named = (env.get(STORE_ENV) or "").strip()
    if not named:
        return f"sqlite:///{run_dir / 'rally.db'}"
    scheme, sep, rest = named.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql"):
        parts = urlsplit(named)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
        query.append(("schema", "demo_" + namespace.removeprefix("demo-").replace("-", "_")))
        return urlunsplit(parts._replace(query=urlencode(query)))
    if sep and scheme.lower() != "sqlite":
        raise ValueError(f"{STORE_ENV}={named!r}: the demo runs on sqlite or postgresql stores")
    path = Path(rest[1:] if sep else named)
    if str(path) in ("", ":memory:"):
        return f"sqlite:///{run_dir / 'rally.db'}"
    suffix = path.suffix or ".db"
    return f"sqlite:///{path.with_name(f'{path.stem}-{namespace}{suffix}')}"


@dataclass(frozen=True, slots=True)
class Explore:
    """The exact commands that show what a finished run left behind."""

    store_url: str
    namespace: str
    poison_task: str | None
    program: str = "rally"  # how this shell reaches the CLI (see ``rally_program``)

    def _env(self) -> str:
        return f"RALLY_STORE_URL={shlex.quote(self.store_url)} RALLY_NAMESPACE={self.namespace}"

    def commands(self) -> dict[str, str]:
        run = f"{self._env()} {self.program}"
        out = {
            "dead_letters": f"{run} dlq list --status all",
            "history": f"{run} events dump",
            "tasks": f"{run} task list --state dead",
            "dashboard": f"{run} dashboard",
        }
        if self.poison_task:
            out["poison_timeline"] = f"{run} task show {self.poison_task}"
        return out


def rally_program(argv0: str, on_path: str | None) -> str:
    """``rally`` when the shell finds this very CLI by that name, else the path it ran from
    (``make demo`` runs ``.venv/bin/rally``, which a fresh shell does not have on its PATH)."""
    ran = Path(argv0)
    if ran.name != "rally":
        return "rally"  # not run as the console script (python -m ...): the usual name
    if on_path is not None and Path(on_path).resolve() == ran.resolve():
        return "rally"
    try:
        return shlex.quote(str(ran.resolve().relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(ran.resolve()))
