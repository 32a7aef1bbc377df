"""A fleet of real OS processes for the fault tests: worker replicas and SDK agent groups.

Each worker replica is ``python -m workers.runtime.process --worker X --replica I``
and each agent group ``python -m workers.demo.agents`` (SDK agents that sleep
``payload["ms"]`` per task), exactly as ``rally worker`` and ``rally demo`` run
them, so a SIGKILL or SIGSTOP here is what a crash or a freeze is in production.
Every process is started in its own session and ended by its own pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from workers.demo.scenario import AgentPlan
from workers.runtime.procs import stop_processes

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("registry", "tasks", "allocator")


def worker_name(worker: str, replica: int | str) -> str:
    return f"{worker}-{replica}"


class ProcessFleet:
    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._args: dict[str, tuple[list[str], dict[str, str]]] = {}
        self._restarts: dict[str, int] = {}
        self.expected_exits: set[int] = set()  # pids we killed, or that were told to die

    # ---- starting ----
    def _spawn(self, name: str, args: list[str], extra_env: Mapping[str, str]) -> None:
        n = self._restarts.get(name, 0)
        self._restarts[name] = n + 1
        suffix = f".{n}" if n else ""
        log = open(self.log_dir / f"{name}{suffix}.log", "wb")  # noqa: SIM115 - kept by the child
        self._args[name] = (args, dict(extra_env))
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", *args],
            env={**self.env, **extra_env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def start_worker(
        self, worker: str, replica: int | str, extra_env: Mapping[str, str] | None = None
    ) -> str:
        name = worker_name(worker, replica)
        args = ["workers.runtime.process", "--worker", worker, "--replica", str(replica)]
        self._spawn(name, args, extra_env or {})
        return name

    def start_workers(self, replicas: int = 3, workers: Sequence[str] = WORKERS) -> list[str]:
        return [self.start_worker(w, r) for w in workers for r in range(replicas)]

    def start_agents(
        self,
        group: str,
        plans: Sequence[AgentPlan],
        heartbeat_s: float,
        extra_env: Mapping[str, str] | None = None,
    ) -> str:
        spec = json.dumps([asdict(p) for p in plans])
        args = ["workers.demo.agents", "--plans", spec, "--heartbeat", str(heartbeat_s)]
        name = f"agents-{group}"
        self._spawn(name, args, extra_env or {})
        return name

    # ---- hurting ----
    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up, no goodbye, as a crash would."""
        proc = self.procs[name]
        self.expected_exits.add(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self, name: str) -> None:
        if self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is still running")
        args, extra_env = self._args[name]
        self._spawn(name, args, extra_env)

    def freeze(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGCONT)

    # ---- looking ----
    def workers(self) -> list[str]:
        """The worker replicas running now."""
        return [
            n for n, p in self.procs.items() if not n.startswith("agents-") and p.poll() is None
        ]

    def started(self, name: str) -> bool:
        """The replica's services are all up (it logged ``worker.started``)."""
        return '"worker.started"' in self.log(name)

    def running(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def crashed(self) -> dict[str, int]:
        """Processes that ended without being told to: name → exit code."""
        return {
            name: proc.returncode
            for name, proc in self.procs.items()
            if proc.poll() is not None and proc.pid not in self.expected_exits
        }

    def log(self, name: str) -> str:
        n = self._restarts.get(name, 1) - 1
        suffix = f".{n}" if n else ""
        return (self.log_dir / f"{name}{suffix}.log").read_text(errors="replace")

    def logs_tail(self, limit: int = 1500) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-limit:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )

    # ---- stopping ----
    def close(self, timeout: float = 15.0) -> None:
        """Agents first (their goodbyes reach running workers), then the workers."""
        agents = [p for n, p in self.procs.items() if n.startswith("agents-")]
        workers = [p for n, p in self.procs.items() if not n.startswith("agents-")]
        self._stop(agents, timeout)
        self._stop(workers, timeout)

    def _stop(self, procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
        for proc in procs:
            if proc.poll() is None:
                self.expected_exits.add(proc.pid)
                proc.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        stop_processes(procs, timeout)
