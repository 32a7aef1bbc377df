"""Start and stop the demo's OS processes: worker replicas and agent groups."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from workers.demo.scenario import AgentPlan
from workers.runtime.procs import stop_processes

WORKERS = ("registry", "tasks", "allocator")


class Fleet:
    """Every process the demo started; `close()` leaves none behind."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_names: list[str] = []  # one per worker process started by start_workers
        self.agent_groups: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(
        self, name: str, args: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the demo, which stops them
        )

    def start_workers(self, replicas: int, registry_shards: int = 1) -> None:
        """``replicas`` of each worker; of the registry, that many per shard, named
        ``registry-<shard>-<replica>`` when there are several (else ``registry-<replica>``)."""
        for worker in WORKERS:
            shards = registry_shards if worker == "registry" else 1
            for shard in range(shards):
                env = {"RALLY_REGISTRY_SHARDS": str(shards), "RALLY_REGISTRY_SHARD": str(shard)}
                for replica in range(replicas):
                    args = ["workers.runtime.process", "--worker", worker]
                    args += ["--replica", str(replica)]
                    name = f"{worker}-{shard}-{replica}" if shards > 1 else f"{worker}-{replica}"
                    self.workers.append(self._spawn(name, args, env))
                    self.worker_names.append(name)

    def start_agents(self, group: str, plans: list[AgentPlan], heartbeat_s: float) -> None:
        spec = json.dumps([asdict(p) for p in plans])
        args = ["workers.demo.agents", "--plans", spec, "--heartbeat", str(heartbeat_s)]
        self.agent_groups[group] = self._spawn(f"agents-{group}", args)

    def kill_agents(self, group: str) -> None:
        """SIGKILL: no drain, no goodbye, as a crash would."""
        proc = self.agent_groups[group]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def crashed(self) -> list[str]:
        return [
            f"worker pid {p.pid} exited {p.returncode}"
            for p in self.workers
            if p.poll() is not None
        ]

    def close(self, timeout: float = 15.0) -> None:
        # agents first, so their goodbyes reach workers that are still running
        stop_processes(self.agent_groups.values(), timeout)
        stop_processes(self.workers, timeout)
