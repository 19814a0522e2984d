"""Names the master and its workers agree on without asking each other: processIds, run dir.

A processId is ``{cluster}-g{generation}-w{serial}`` (``k3f9qa-g2-w7``): the master assigns it at
fork, so it can log and clean up by processId, and never reuses one (a respawned worker gets a
new serial: a socket aimed at the dead one is refused at once, not served by a stranger). The
cluster part says which master a process belongs to; a worker that sees a processId of its own
cluster in a room URL knows the owner is a sibling on this host and where its hand-off endpoint
is: ``{run_dir}/{processId}.sock``. No registry round-trip is needed to find it again after a
respawn. The run dir is private (0700) and holds nothing else but the embedded Redis socket.
"""

from __future__ import annotations

import os
import re
import secrets
import string
import tempfile
from dataclasses import dataclass

__all__ = ["ProcessName", "endpoint_path", "make_run_dir", "new_cluster_id", "redis_socket_path"]

_CLUSTER_ALPHABET = string.ascii_lowercase + string.digits
_PATTERN = re.compile(r"^([a-z0-9]{6})-g([0-9]{1,9})-w([0-9]{1,9})$")


def new_cluster_id() -> str:
    """Six characters of [a-z0-9]: short in URLs and log lines, unique enough per host."""
    return "".join(secrets.choice(_CLUSTER_ALPHABET) for _ in range(6))


@dataclass(frozen=True, slots=True)
class ProcessName:
    cluster: str
    generation: int
    serial: int

    def __str__(self) -> str:
        return f"{self.cluster}-g{self.generation}-w{self.serial}"

    @classmethod
    def parse(cls, process_id: str) -> ProcessName | None:
        """The parts of a cluster processId; None for any other id (another host, a single process)."""
        match = _PATTERN.match(process_id)
        if match is None:
            return None
        return cls(match.group(1), int(match.group(2)), int(match.group(3)))


def make_run_dir(cluster: str, parent: str | None = None) -> str:
    """A fresh private directory (mkdtemp makes it 0700) for the endpoints and the Redis socket."""
    return tempfile.mkdtemp(prefix=f"greenroom-{cluster}-", dir=parent)


def endpoint_path(run_dir: str, process_id: str) -> str:
    return os.path.join(run_dir, f"{process_id}.sock")


def redis_socket_path(run_dir: str) -> str:
    return os.path.join(run_dir, "redis.sock")
