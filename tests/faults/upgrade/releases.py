"""An earlier release of rallypoint, taken from this repository's history, run as processes.

The release's source tree is written out of git (``git archive``: no worktree to register
or clean up in the shared repository) and its processes run with that tree first on
their path, using this checkout's virtualenv for their dependencies, exactly as
``rally worker`` would run them after an upgrade of the code alone.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.support.fleet import ROOT, ProcessFleet


def checkout(commit: str, dest: Path) -> Path:
    """The source tree of ``commit`` under ``dest``; skips when the clone lacks it."""
    found = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(f"release commit {commit[:10]} is not in this clone (shallow?): fetch it")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


# What the release's own code runs before its workers: its store schema, its topology.
_PREPARE = """
import asyncio, sys
from broker.connection import BrokerConnection
from broker.declare import declare_topology
from broker.settings import BrokerSettings
from workers.store import open_store

async def main() -> None:
    store = open_store(sys.argv[1])
    await store.start()
    await store.close()
    conn = await BrokerConnection(BrokerSettings.from_env(), role="upgrade").connect()
    await declare_topology(conn)
    await conn.close()

asyncio.run(main())
"""


class ReleaseFleet(ProcessFleet):
    """A ProcessFleet whose processes run the code under ``root`` instead of this checkout."""

    def __init__(self, root: Path, env: Mapping[str, str], log_dir: Path) -> None:
        super().__init__(env, log_dir)
        self.root = root
        self.env["PYTHONPATH"] = str(root)

    def prepare(self, store_url: str) -> None:
        """Create the store schema and declare the topology as this release does."""
        subprocess.run(
            [sys.executable, "-c", _PREPARE, store_url],
            env=self.env,
            cwd=self.root,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _spawn(self, name: str, args: list[str], extra_env: Mapping[str, str]) -> None:
        n = self._restarts.get(name, 0)
        self._restarts[name] = n + 1
        suffix = f".{n}" if n else ""
        log = open(self.log_dir / f"{name}{suffix}.log", "wb")  # noqa: SIM115 - kept by the child
        self._args[name] = (args, dict(extra_env))
        # cwd first on sys.path for ``python -m``: the release's packages, not this checkout's
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", *args],
            env={**self.env, **extra_env},
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def stop(self, name: str, timeout: float = 30.0) -> None:
        """SIGTERM, as an orchestrator replacing a replica does: it drains, then exits."""
        proc = self.procs[name]
        self.expected_exits.add(proc.pid)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
