"""CPU time and resident memory of a process tree, read from /proc.

The harness samples both servers and the load generator with this one piece of code, so that
"server CPU per operation" means the same thing for a Node and a Python server. A tree, not a
PID, because a server command may fork workers (a multi-worker greenroom, ``npm exec``...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    cpu_seconds: float  # user + system of every live process of the tree
    system_seconds: float  # the kernel's part of it (syscalls: sockets, epoll...)
    rss_bytes: int  # sum over the tree (shared pages of forked workers count once per worker)
    processes: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:  # exited meanwhile
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return data[data.rindex(")") + 2:].split()


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def sample(root: int, tree: bool = True) -> Sample:
    """CPU and RSS of ``root`` (and its descendants when ``tree``)."""
    user_ticks = system_ticks = rss_pages = count = 0
    for pid in descendants(root) if tree else [root]:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) ... rss(21), in the
        # numbering of proc(5) minus 3.
        user_ticks += int(fields[11])
        system_ticks += int(fields[12])
        rss_pages += int(fields[21])
        count += 1
    return Sample((user_ticks + system_ticks) / CLOCK_TICKS, system_ticks / CLOCK_TICKS,
                  rss_pages * PAGE_SIZE, count)


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine spent (user + system + steal), from /proc/stat.

    Minus the server's and the load generator's, this is what *other* processes took during a
    measurement: on a shared machine that is the noise behind a surprising number. Interrupt
    and softirq time is left out: much of loopback TCP runs there, is charged to no process
    (the servers' numbers miss it alike), and would otherwise pass for background load.
    """
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + steal) / CLOCK_TICKS

