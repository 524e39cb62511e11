"""How many CPUs this process may use: torch-free, shared by the runtime and torch-free paths."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (taskset, a container's cpuset), not the
    machine's count, since one thread per core too many made a pinned run's step 4-9x slower."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
