"""What processes cost, and what they may use: CPU seconds, peak memory, open files, RAM scratch space."""

from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children, such as Mosquitto, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def own_cpu_s() -> float:
    """CPU seconds (user and system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of process ``pid`` so far; (0, 0) once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0
    return cpu, memory_mib(pid, "VmHWM")


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/PID/status (VmRSS now, VmHWM the peak) in MiB; 0 once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith(field + ":")), 0.0)


def ram_scratch_dir(prefix: str, fallback: Path) -> Path:
    """A new directory on a RAM filesystem (/dev/shm) when there is one, else under ``fallback``.

    Each real device has its own flash; in a simulation hundreds share one disk, and the store's fsyncs
    (a few ms each on a disk) would queue behind one another and show up as link time. On tmpfs they
    cost nothing.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix=prefix, dir=shm))
    fallback.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=fallback))
