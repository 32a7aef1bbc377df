"""CPU time per task by process kind, from the kernel's own accounting (``/proc/<pid>/stat``).

The bench reads utime + stime of every process of one kind before and after
the measured window; the difference over the tasks completed is
``cpu_ms_per_task.<kind>``. The broker is the ``beam.smp`` of the RabbitMQ the
bench uses, when that runs on this machine and its ``/proc`` entry is readable;
otherwise its figure is None (not measured). Clock ticks are 10 ms on most
kernels: over thousands of tasks that is well below the noise.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

KINDS = ("tasks", "allocator", "registry", "agent", "client", "broker")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", ""})
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
BROKER_PROCESS = b"beam.smp"

Ticks = dict[str, int | None]  # kind → utime + stime of its processes, None if one is unreadable


def parse_stat_ticks(stat: str) -> int:
    """utime + stime (fields 14 and 15) of a ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may hold spaces or
    parentheses itself, so fields are counted from the last ``)``.
    """
    after_name = stat[stat.rindex(")") + 2 :].split()
    # after_name[0] is field 3 (state): utime is field 14, stime field 15
    return int(after_name[11]) + int(after_name[12])


def process_ticks(pid: int) -> int | None:
    try:
        return parse_stat_ticks(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def broker_pids(amqp_url: str, proc: Path = Path("/proc")) -> list[int]:
    """The local RabbitMQ node the bench uses: the ``beam.smp`` listening on the URL's port.

    Other Erlang VMs come and go on a shared machine (``rabbitmqctl``, a test's
    cluster nodes), so a name alone does not tell which one serves us; none when
    the broker is on another host or its sockets cannot be read.
    """
    parts = urlsplit(amqp_url)
    if (parts.hostname or "") not in LOCAL_HOSTS:
        return []
    inodes = listening_inodes(parts.port or 5672, proc)
    pids: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            if name.endswith(BROKER_PROCESS) and inodes & _socket_inodes(entry):
                pids.append(int(entry.name))
        except OSError:
            continue
    return sorted(pids)


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """Socket inodes of the TCP listeners on ``port`` (``/proc/net/tcp`` and ``tcp6``)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        inodes |= parse_listeners(lines, port)
    return inodes


def parse_listeners(lines: Iterable[str], port: int) -> set[str]:
    """``sl local_address rem_address st ... inode``: state 0A is LISTEN, ports in hex."""
    inodes: set[str] = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def _socket_inodes(process: Path) -> set[str]:
    inodes: set[str] = set()
    for fd in (process / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def kind_of(process: str) -> str:
    """``tasks-0`` → ``tasks``; the bench names worker replicas ``<worker>-<replica>``."""
    return process.rsplit("-", 1)[0]


def pids_by_kind(
    workers: Mapping[str, int], agents: Iterable[int], client: int, broker: Sequence[int]
) -> dict[str, list[int]]:
    kinds: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for name, pid in workers.items():
        kinds.setdefault(kind_of(name), []).append(pid)
    kinds["agent"] = list(agents)
    kinds["client"] = [client]
    kinds["broker"] = list(broker)
    return kinds


def sample(kinds: Mapping[str, Sequence[int]]) -> Ticks:
    out: Ticks = {}
    for kind, pids in kinds.items():
        ticks = [process_ticks(pid) for pid in pids]
        known = [t for t in ticks if t is not None]
        out[kind] = sum(known) if known and len(known) == len(ticks) else None
    return out


def ms_per_task(
    before: Mapping[str, int | None], after: Mapping[str, int | None], tasks: int
) -> dict[str, float | None]:
    """CPU milliseconds per task for each kind, and their ``total`` when every kind is known."""
    out: dict[str, float | None] = {}
    for kind in before.keys() | after.keys():
        start, end = before.get(kind), after.get(kind)
        if start is None or end is None or tasks <= 0:
            out[kind] = None
        else:
            out[kind] = round((end - start) * 1000 / TICKS_PER_S / tasks, 3)
    ordered = {kind: out.get(kind) for kind in KINDS} | {
        k: v for k, v in sorted(out.items()) if k not in KINDS
    }
    known = [v for v in ordered.values() if v is not None]
    ordered["total"] = round(sum(known), 3) if known and len(known) == len(ordered) else None
    return ordered
