"""Resident memory and open file descriptors of a running process, by pid.

psutil is used when it is installed; otherwise Linux's /proc, which is all a
soak on this project's hosts needs (psutil is not a dependency).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessUsage:
    rss_mb: float
    open_fds: int


def process_usage(pid: int) -> ProcessUsage:
    """What process ``pid`` holds now; raises ProcessLookupError once it has exited."""
    try:
        import psutil  # noqa: PLC0415
    except ImportError:
        return _from_proc(pid)
    try:
        proc = psutil.Process(pid)
        return ProcessUsage(proc.memory_info().rss / 2**20, proc.num_fds())
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(f"process {pid} has exited") from exc


def _from_proc(pid: int) -> ProcessUsage:
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError as exc:
        raise ProcessLookupError(f"process {pid} has exited") from exc
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return ProcessUsage(int(line.split()[1]) / 1024, fds)  # the kernel reports kB
    raise ProcessLookupError(f"process {pid} is a zombie (no resident memory)")
