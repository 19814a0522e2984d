"""Start and stop the two servers under test, each on 127.0.0.1, each in its own process group.

A benchmark that leaves a server behind poisons the next run (a busy core, a taken port), so
every process started here is registered with a :class:`Processes` set that the harness closes
in a ``finally``: on success, on an exception and on Ctrl-C alike.
"""

from __future__ import annotations

import os
import resource
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

GREENROOM_CMD = "greenroom serve benchmarks/greenroom_app.py:server --bind 127.0.0.1:{port}"
COLYSEUS_CMD = "node benchmarks/colyseus_server.mjs {port}"

#: A server that is not listening after this long failed to start.
START_TIMEOUT = 20.0
#: SIGTERM, then SIGKILL after this long.
STOP_GRACE = 5.0


@dataclass(frozen=True)
class ServerSpec:
    """One server under test; ``command`` is a shell-style template with ``{port}``."""

    name: str
    command: str
    env: dict[str, str] | None = None

    def argv_env(self, port: int) -> tuple[list[str], dict[str, str]]:
        """The argv, and the environment: leading ``NAME=value`` words work as in a shell
        (``PYTHONPATH=/tmp/gr-scratch greenroom serve ...``)."""
        words = shlex.split(self.command.format(port=port))
        env = dict(self.env or {})
        while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        if not words:
            raise ValueError(f"{self.name}: empty server command {self.command!r}")
        return words, env


def npm_install(timeout: float = 300) -> None:
    """Install the pinned Colyseus of benchmarks/package-lock.json unless it is there already."""
    if (BENCH_DIR / "node_modules" / "@colyseus" / "core" / "package.json").is_file():
        return
    print("benchmarks: installing the reference Colyseus server (npm ci)...", flush=True)
    subprocess.run(["npm", "ci", "--legacy-peer-deps", "--no-audit", "--no-fund",
                    "--loglevel=error"], cwd=BENCH_DIR, check=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raise_fd_limit() -> None:
    """In the child: 2,000 idle clients need more descriptors than a 1,024 soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                    else max(soft, 65536), hard))


class Processes:
    """Every process the harness started; ``close()`` ends them all (by their own ids)."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def popen(self, argv: list[str], *, env: dict[str, str] | None = None,
              stdout: int | IO | None = None, stdin: int | None = None,
              stderr: int | IO | None = None, text: bool = False) -> subprocess.Popen:
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdin=stdin, stdout=stdout,
                                stderr=stderr, text=text, start_new_session=True,
                                preexec_fn=_raise_fd_limit)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM the process group we created for ``proc``, SIGKILL it after ``grace``."""
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        else:
            _signal_group(proc, signal.SIGKILL)  # the leader is gone; workers may not be
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def close(self) -> None:
        for proc in list(self._procs):
            try:
                self.stop(proc, grace=2.0)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"benchmarks: could not stop pid {proc.pid}: {exc}", flush=True)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


class RunningServer:
    """A started server: its process, port and log file."""

    def __init__(self, spec: ServerSpec, proc: subprocess.Popen, port: int, log_path: Path) -> None:
        self.spec = spec
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(processes: Processes, spec: ServerSpec, log_path: Path) -> RunningServer:
    """Start ``spec`` on a free port and wait until it accepts connections."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv, env = spec.argv_env(port)
    with open(log_path, "wb") as log:
        proc = processes.popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    server = RunningServer(spec, proc, port, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{spec.name} exited with {proc.returncode} before listening:\n"
                               f"{server.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    processes.stop(proc)
    raise RuntimeError(f"{spec.name} not listening on 127.0.0.1:{port} after {START_TIMEOUT} s:\n"
                       f"{server.log_tail()}")
