"""A process's resident memory, as Linux reports it in /proc (the benchmarks' one way to read it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Memory:
    """One reading of /proc/PID/status, in MiB: resident now and the peak so far."""

    rss: float
    peak: float


def read_memory(pid: int) -> Memory:
    """VmRSS and VmHWM of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    kib = {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}
    return Memory(kib["VmRSS"] / 1024, kib["VmHWM"] / 1024)
