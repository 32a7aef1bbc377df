"""Sampling profiles (py-spy) of the fleet's processes while the bench loads them.

``rally bench --profile DIR`` writes one collapsed-stack file per process
(``<name>.txt``, for flamegraph.pl or https://www.speedscope.app) covering the
saturated part of the first rallypoint run. py-spy attaches with ptrace, so it
needs the permission to (root, or kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import structlog

log = structlog.get_logger(__name__)

SAMPLES_PER_S = 100


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profilers:
    """``with Profilers(dir, {"tasks-0": pid, ...}):`` samples each pid until the block ends."""

    def __init__(self, out_dir: Path, pids: dict[str, int]) -> None:
        self.out_dir = out_dir
        self.pids = pids
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profilers:
        tool = py_spy()
        if tool is None:
            log.warning("bench.profile_unavailable", why="py-spy is not installed")
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            cmd = [tool, "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_S)]
            cmd += [
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(self.out_dir / f"{name}.txt"),
            ]
            self._procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
