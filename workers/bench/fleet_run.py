"""`rally bench fleet`: N simulated agents speaking the protocol, tasks flowing, the cost of each.

One replica of each worker (real processes, :func:`workers.bench.fleet.rally_fleet`),
``processes`` agent processes of N/processes agents each
(:mod:`workers.bench.fleet_agents`), and this process as the client submitting
``tasks_per_s`` tasks a second for ``seconds``. Measured: the registry's and the
allocator's CPU (share of one core, from /proc), the broker's open file
descriptors and resident memory before the agents, after their inboxes, and at
the end, how long the inboxes took to declare, whether a new AMQP connection still
opens at the end, and from the store (:mod:`workers.bench.fleet_figures`)
placement latency, heartbeat lag, false losses and tasks/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from broker.connection import BrokerConnection
from broker.settings import BrokerSettings
from workers.bench.cpu import TICKS_PER_S, broker_pids, process_ticks
from workers.bench.fleet import FleetShape, RunningFleet, rally_fleet
from workers.bench.fleet_agents import delete_queues, pool_capability
from workers.bench.fleet_figures import FleetTally
from workers.bench.memory import rss_mib

Progress = Callable[[str], None]
READ_PAGE = 5000


@dataclass(frozen=True, slots=True)
class FleetOptions:
    agents: int = 100
    tasks_per_s: float = 100.0
    seconds: float = 60.0
    processes: int = 4
    capacity: int = 4
    pools: int = 10  # capabilities bench.pool.0..pools-1, one per agent; tasks pick one
    task_ms: float = 100.0
    heartbeat_s: float = 5.0
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    store_url: str | None = None
    start_timeout_s: float = 600.0
    drain_s: float = 15.0  # after the last submit, for the tail to finish
    rabbit_node: str | None = None  # for rabbitmqctl; None: its default node
    registry_shards: int = 1  # RALLY_REGISTRY_SHARDS of the fleet's registry

    @property
    def pool_count(self) -> int:
        """Never a pool without an agent: its tasks could never be placed."""
        return max(1, min(self.pools, self.agents))


def fd_limit(pids: list[int]) -> int | None:
    """The beam's soft limit on open files: what it runs out of, whatever RabbitMQ counts."""
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    return None


def broker_fds(pids: list[int]) -> int | None:
    try:
        return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids) if pids else None
    except OSError:
        return None


async def broker_state(pids: list[int], node: str | None) -> dict[str, Any]:
    """The beam's OS file descriptors and RSS, and RabbitMQ's own count of file handles
    (``rabbitmqctl status``: what it refuses new sockets by, which OS fds do not show)."""
    rss = [rss_mib(pid) for pid in pids]
    known = [r for r in rss if r is not None]
    state: dict[str, Any] = {
        "os_fds": broker_fds(pids),
        "os_fd_limit": fd_limit(pids),
        "rss_mib": round(sum(known), 1) if known else None,
    }
    return state | await rabbit_status(node)


async def rabbit_status(node: str | None) -> dict[str, Any]:
    args = ["-q", "status", "--formatter", "json"] + (["-n", node] if node else [])
    try:
        proc = await asyncio.create_subprocess_exec(
            "rabbitmqctl", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return {"file_handles": None, "file_handle_limit": None, "sockets": None}
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
        fds = json.loads(out)["file_descriptors"]
    except (TimeoutError, ValueError, KeyError, TypeError):
        # a node out of file handles may not answer rabbitmqctl either: never wait on it
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return {"file_handles": None, "file_handle_limit": None, "sockets": None}
    return {
        "file_handles": fds.get("total_used"),
        "file_handle_limit": fds.get("total_limit"),
        "sockets": fds.get("sockets_used"),
        "socket_limit": fds.get("sockets_limit"),
    }


PROBE_CODE = """
import asyncio, sys
from broker.connection import BrokerConnection
from broker.settings import BrokerSettings

async def main() -> None:
    settings = BrokerSettings.from_env({"RALLY_AMQP_URL": sys.argv[1]})
    conn = await BrokerConnection(settings, role="bench-probe").connect(timeout=float(sys.argv[2]))
    await conn.close()

asyncio.run(main())
"""


async def new_connection_opens(amqp_url: str, timeout: float = 15.0) -> dict[str, Any]:
    """A fresh process opens a connection: what one more agent or worker would meet."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE_CODE, amqp_url, str(timeout),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    ok = proc.returncode == 0
    error = None if ok else err.decode(errors="replace").strip().splitlines()[-1:]
    return {"ok": ok, "s": round(time.monotonic() - started, 2), "error": error}


class CpuMeter:
    """Share of one core per process over the measured window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: process_ticks(pid) for name, pid in pids.items()}
        self.t0 = time.monotonic()

    def shares(self) -> dict[str, float | None]:
        span = time.monotonic() - self.t0
        out: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            before, after = self.start[name], process_ticks(pid)
            if before is None or after is None or span <= 0:
                out[name] = None
            else:
                out[name] = round((after - before) / TICKS_PER_S / span, 3)
        return out


def spawn_agents(
    opts: FleetOptions, fleet: RunningFleet, prefix: str, run_dir: Path
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    env = {
        **os.environ,
        "RALLY_AMQP_URL": fleet.amqp_url,
        "RALLY_NAMESPACE": fleet.namespace,
        "RALLY_LOG_LEVEL": "WARNING",
    }
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    per = -(-opts.agents // opts.processes)
    for first in range(0, opts.agents, per):
        count = min(per, opts.agents - first)
        out = run_dir / f"fleet-agents-{first}.out"
        args = ["--prefix", prefix, "--first", str(first), "--count", str(count)]
        args += ["--capacity", str(opts.capacity), "--pools", str(opts.pool_count)]
        args += ["--heartbeat", str(opts.heartbeat_s), "--task-ms", str(opts.task_ms)]
        with open(out, "wb") as stdout, open(run_dir / f"fleet-agents-{first}.log", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "workers.bench.fleet_agents", *args],
                env=env,
                stdout=stdout,
                stderr=err,
                start_new_session=True,
            )
        procs.append((proc, out))
    return procs


def lines_of(path: Path, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict) and kind in obj:
                    found.append(obj[kind])
    return found


async def wait_lines(
    procs: list[tuple[subprocess.Popen[bytes], Path]], kind: str, deadline: float
) -> list[dict[str, Any]]:
    while True:
        found = [lines_of(out, kind) for _, out in procs]
        if all(found):
            return [f[0] for f in found]
        dead = [p.pid for p, _ in procs if p.poll() is not None]
        if dead and kind == "ready":
            raise RuntimeError(f"simulated agent process {dead[0]} exited early")
        if time.monotonic() > deadline:
            raise TimeoutError(f"simulated agents: no {kind!r} from every process in time")
        await asyncio.sleep(0.2)


async def run_fleet_bench(opts: FleetOptions, progress: Progress) -> dict[str, Any]:
    pids = broker_pids(opts.amqp_url)
    report: dict[str, Any] = {"options": asdict(opts) | {"amqp_url": None}, "errors": []}
    report["broker_before"] = await broker_state(pids, opts.rabbit_node)
    shape = FleetShape(
        replicas=1, agents=0, store_url=opts.store_url, registry_shards=opts.registry_shards
    )
    async with rally_fleet(opts.amqp_url, shape) as fleet:
        prefix = f"{fleet.namespace}-sim"
        run_dir = Path(fleet.fleet.log_dir)
        progress(f"workers up; starting {opts.agents} agents in {opts.processes} processes")
        started = time.monotonic()
        procs = spawn_agents(opts, fleet, prefix, run_dir)
        try:
            deadline = started + opts.start_timeout_s
            ready = await wait_lines(procs, "ready", deadline)
            report["inboxes"] = {
                "declare_s_per_process_max": round(max(r["declare_s"] for r in ready), 2),
                "ready_s": round(time.monotonic() - started, 2),
            }
            tally = FleetTally(prefix)
            position = await _until_joined(fleet, tally, opts.agents, deadline)
            report["inboxes"]["joined_s"] = round(time.monotonic() - started, 2)
            report["broker_after_inboxes"] = await broker_state(pids, opts.rabbit_node)
            progress(f"{opts.agents} agents joined; submitting {opts.tasks_per_s}/s")
            workers = fleet.worker_pids()
            cpu = CpuMeter(
                {k: v for k, v in workers.items() if k.split("-")[0] != "tasks"}
                | fleet.shard_pids()
                | {"tasks-0": workers["tasks-0"]}
                | {f"broker-{p}": p for p in pids}
                # the simulator runs on the same machine: its share says what is left
                | {f"agents-{i}": proc.pid for i, (proc, _) in enumerate(procs)}
            )
            fds_max = await _submit(fleet, opts, pids)
            await asyncio.sleep(opts.drain_s)
            report["cpu_share_of_core"] = cpu.shares()
            await _read_tail(fleet, tally, position)
            report |= tally.figures()
            report["broker_fds_max_during_run"] = fds_max
            report["broker_after_run"] = await broker_state(pids, opts.rabbit_node)
            report["new_connection"] = await new_connection_opens(opts.amqp_url)
            fleet.check_alive()
        except Exception as exc:
            report["errors"].append(repr(exc))
            progress(f"error: {exc!r}")
        finally:
            for proc, _ in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError, RuntimeError):
                done = await wait_lines(procs, "done", time.monotonic() + 120)
                report["agents_side"] = _summed(done)
            for proc, _ in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
            if "agents_side" not in report:  # not every agent left: its inbox would stay 24 h
                await _delete_inboxes(fleet, [f"{prefix}-{i}" for i in range(opts.agents)])
    report["broker_after_cleanup"] = await broker_state(pids, opts.rabbit_node)
    return report


async def _delete_inboxes(fleet: RunningFleet, agent_ids: list[str]) -> None:
    env = {"RALLY_AMQP_URL": fleet.amqp_url, "RALLY_NAMESPACE": fleet.namespace}
    conn = await BrokerConnection(BrokerSettings.from_env(env), role="bench").connect()
    try:
        await delete_queues(conn, [conn.topology.inbox_queue(a).name for a in agent_ids])
    finally:
        await conn.close()


def _summed(done: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for counts in done:
        for key, value in counts.items():
            if key.endswith("_max_s") or key == "declare_s":
                out[key] = round(max(out.get(key, 0.0), value), 3)
            else:
                out[key] = out.get(key, 0) + value
    return out


async def _until_joined(fleet: RunningFleet, tally: FleetTally, n: int, deadline: float) -> int:
    position = 0
    while len(tally.joined) < n:
        fleet.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(tally.joined)} of {n} agents joined in time")
        page = await fleet.store.read_all(position, READ_PAGE)
        if page:
            position = page[-1].position
            tally.add(page)
        if len(page) < READ_PAGE:
            await asyncio.sleep(0.2)
    return position


async def _read_tail(fleet: RunningFleet, tally: FleetTally, position: int) -> None:
    while True:
        page = await fleet.store.read_all(position, READ_PAGE)
        if not page:
            return
        position = page[-1].position
        tally.add(page)


async def _submit(fleet: RunningFleet, opts: FleetOptions, pids: list[int]) -> int | None:
    """Submit at the rate for the duration; each submit confirmed, none awaited in line."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    pending: set[asyncio.Task[Any]] = set()
    fds_max: int | None = None
    last_sample = start
    while (now := loop.time()) - start < opts.seconds:
        due = int((now - start) * opts.tasks_per_s) - sent
        for _ in range(max(0, due)):
            capability = pool_capability(random.randrange(opts.pool_count))
            task = asyncio.ensure_future(fleet.client.submit(capability, {}, timeout_s=60.0))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        if now - last_sample >= 1.0:
            fds = broker_fds(pids)
            if fds is not None:
                fds_max = max(fds_max or 0, fds)
            last_sample = now
            fleet.check_alive()
        await asyncio.sleep(0.01)
    if pending:
        await asyncio.wait(pending, timeout=30)
    return fds_max
