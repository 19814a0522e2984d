"""What the master is asked to run, and what it tells each worker it forks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .listeners import Address

__all__ = ["ClusterConfig", "WORKER_BOOT_ERROR", "WorkerSpec"]

#: The exit code of a worker that could not boot (bad TARGET, import error, backend
#: unreachable); the master halts on it instead of respawning in a loop (as gunicorn does).
WORKER_BOOT_ERROR = 3


@dataclass
class ClusterConfig:
    target: str
    binds: list[Address]
    workers: int = 2
    #: ``module:function`` called in each forked child with a WorkerSpec; it must monkey-patch
    #: before anything else, and return the worker's exit code.
    worker_entry: str = "greenroom.serving:run_worker"
    timeout: float = 30.0
    graceful_timeout: float = 30.0
    log_level: str = "info"
    access_log: bool = False
    redis_url: str | None = None
    mongo_uri: str | None = None
    public_address: str | None = None
    pid_file: str | None = None
    #: Where the private run dir is made (default: the temp dir).
    run_dir_parent: str | None = None
    #: On a reload, move live rooms to the new generation (greenroom.migration).
    migrate: bool = False


@dataclass
class WorkerSpec:
    """Plain data a worker needs; no live objects but file descriptors."""

    target: str
    process_id: str
    cluster: str
    generation: int
    run_dir: str
    #: (fd, address) of each inherited listening socket.
    listeners: list[tuple[int, Address]]
    heartbeat_fd: int
    #: Written to (one byte) once the worker serves, to wake the master.
    wake_fd: int
    timeout: float
    graceful_timeout: float
    access_log: bool
    redis_url: str | None
    mongo_uri: str | None
    public_address: str | None
    migrate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
