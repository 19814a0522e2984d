"""How many workers ``--workers auto`` means: the CPUs this process may really use.

``os.cpu_count()`` counts the host's cores; a container or a taskset sees fewer. The affinity
mask says which cores the scheduler will use, and a cgroup CPU quota (``docker --cpus 1.5``,
a Kubernetes limit) caps how much of them: the smaller of the two, rounded up, at least 1.
"""

from __future__ import annotations

import math
import os

__all__ = ["cgroup_cpu_limit", "usable_cpus"]

_CGROUP_ROOT = "/sys/fs/cgroup"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _own_cgroup_v2_dirs(root: str) -> list[str]:
    """This process's cgroup v2 directory and its ancestors, innermost first."""
    dirs = []
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            path = line[3:].strip("/")
            while path:
                dirs.append(os.path.join(root, path))
                path = os.path.dirname(path)
    dirs.append(root)
    return dirs


def cgroup_cpu_limit(root: str = _CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, else v1 ``cfs_quota_us``); None if none."""
    limits = []
    for directory in _own_cgroup_v2_dirs(root):
        raw = _read(os.path.join(directory, "cpu.max"))
        if raw:
            quota, _, period = raw.partition(" ")
            if quota != "max" and period:
                limits.append(int(quota) / int(period))
    if limits:
        return min(limits)
    quota = _read(os.path.join(root, "cpu", "cpu.cfs_quota_us"))
    period = _read(os.path.join(root, "cpu", "cpu.cfs_period_us"))
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def usable_cpus() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)
