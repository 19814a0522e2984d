"""The worker's heartbeat: an unlinked temporary file whose mtime the worker keeps fresh.

The file is created by the master before fork and unlinked at once: only the master and its
worker hold it (by fd), nothing is left on disk whatever happens. The worker touches it from a
greenlet, so a fresh mtime proves that the worker's hub runs; a hub blocked by a busy loop, a
blocking C call or SIGSTOP stops touching it, and the master sees that without any message.
"""

from __future__ import annotations

import os
import tempfile
import time

__all__ = ["Heartbeat"]


class Heartbeat:
    def __init__(self, directory: str | None = None) -> None:
        fd, path = tempfile.mkstemp(prefix="heartbeat-", dir=directory)
        os.unlink(path)
        self.fd = fd
        os.set_inheritable(fd, True)
        self.notify()

    def notify(self) -> None:
        """Called by the worker: 'my hub is running'."""
        os.utime(self.fd)

    def last_update(self) -> float:
        """Called by the master: when the worker last said so (time.time() clock)."""
        return os.fstat(self.fd).st_mtime

    def silent_for(self) -> float:
        return time.time() - self.last_update()

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
