"""CPU time of other processes (workers, broker and database servers), read from /proc.

A benchmark samples the processes before and after its measured part; the difference is
the CPU they spent on it. Processes that end or cannot be read count as nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["cpu_seconds", "pids_named"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _one(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each process so far."""
    return {pid: _one(pid) for pid in pids}


def pids_named(name: str) -> list[int]:
    """Pids of the processes whose command name is ``name`` (``beam.smp``, ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == name:
            found.append(int(entry.name))
    return found
