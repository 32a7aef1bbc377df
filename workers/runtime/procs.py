"""Stopping child processes (worker replicas, agents) started in their own session.

SIGTERM first so they leave cleanly (agents deregister, workers flush their
outbox), then SIGKILL to the whole process group if they take too long. The
demo's fleet, the bench and the fault tests' fleet all stop theirs this way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable


def stop_process(
    proc: subprocess.Popen[bytes], timeout: float = 10.0, sig: int = signal.SIGTERM
) -> None:
    stop_processes([proc], timeout, sig)


def stop_processes(
    procs: Iterable[subprocess.Popen[bytes]], timeout: float = 10.0, sig: int = signal.SIGTERM
) -> None:
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
