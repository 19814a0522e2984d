"""What the master knows of each worker it forked, and how a forked child becomes a worker."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .children import die_with_parent
from .config import WORKER_BOOT_ERROR, WorkerSpec
from .heartbeat import Heartbeat

__all__ = ["Worker", "WorkerState", "become_worker"]

log = logging.getLogger("greenroom.cluster")


class WorkerState(Enum):
    BOOTING = "booting"    # forked; not serving yet (its hand-off endpoint does not exist)
    SERVING = "serving"    # takes connections and new rooms
    RETIRING = "retiring"  # a reload or TTOU retired it: drains its rooms, then exits


@dataclass
class Worker:
    pid: int
    process_id: str
    generation: int
    serial: int
    heartbeat: Heartbeat
    endpoint: str
    state: WorkerState = WorkerState.BOOTING
    started_at: float = field(default_factory=time.monotonic)
    aborted_at: float | None = None  # when it was sent SIGABRT for a silent heartbeat
    kill_at: float | None = None  # a retiring worker still alive then is killed

    def describe(self) -> str:
        return f"{self.process_id} (pid {self.pid})"

    def signal(self, sig: int) -> bool:
        try:
            os.kill(self.pid, sig)
            return True
        except ProcessLookupError:
            return False


_RESET_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGTTIN,
                  signal.SIGTTOU, signal.SIGCHLD, signal.SIGUSR2)


def become_worker(entry: str, spec: WorkerSpec, close_fds: list[int]) -> None:
    """In the forked child: forget the master's state, run ``entry(spec)``, exit with its code.

    Never returns. The entry's module is imported here, in the child, so the master never
    loads gevent or the application.
    """
    code = 1
    try:
        die_with_parent()
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        module_name, _, function = entry.partition(":")
        try:
            run: Any = getattr(importlib.import_module(module_name), function or "run_worker")
        except Exception as exc:  # noqa: BLE001
            print(f"greenroom: worker entry {entry!r} cannot be loaded: {exc}", file=sys.stderr)
            code = WORKER_BOOT_ERROR
        else:
            code = int(run(spec) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - a worker never returns into the master's code
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
