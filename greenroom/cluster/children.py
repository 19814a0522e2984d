"""Starting child processes from the master: fork, and make the child die with its parent.

The master never uses ``subprocess`` (it imports threading) nor threads: a worker forked from it
monkey-patches a clean interpreter (docs/architecture.md, "Boot order"). A child asks the kernel for SIGTERM when the
master dies (PR_SET_PDEATHSIG), so even a ``kill -9`` of the master leaves no worker or
redis-server behind.
"""

from __future__ import annotations

import ctypes
import os
import signal

__all__ = ["die_with_parent", "describe_status", "fork_exec"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig))
    except (OSError, AttributeError):  # not Linux: the worker's own parent check still applies
        pass


def fork_exec(argv: list[str], *, keep_fds: tuple[int, ...] = ()) -> int:
    """Run ``argv`` in a child that dies with the master; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: nothing may escape this block
        die_with_parent()
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGTTIN,
                    signal.SIGTTOU, signal.SIGCHLD, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for fd in keep_fds:
            os.set_inheritable(fd, True)
        os.execv(argv[0], argv)
    except BaseException:  # noqa: BLE001
        os._exit(127)
    os._exit(127)


def describe_status(status: int) -> str:
    """'exit code 3' / 'signal SIGKILL' for a waitpid status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"signal {name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
