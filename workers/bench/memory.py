"""Peak resident memory of a process, from the kernel's own record (VmHWM)."""

from __future__ import annotations

from pathlib import Path

KIB_PER_MIB = 1024


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak RSS so far in MiB; None if it is gone or the kernel does not say."""
    return _status_field(pid, "VmHWM")


def rss_mib(pid: int) -> float | None:
    return _status_field(pid, "VmRSS")


def _status_field(pid: int, field: str) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return parse_status_kib(text, field)


def parse_status_kib(status: str, field: str) -> float | None:
    """``VmHWM:\t  51234 kB`` → 50.03 (MiB)."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            parts = value.split()
            if parts and parts[0].isdigit():
                return int(parts[0]) / KIB_PER_MIB
    return None
