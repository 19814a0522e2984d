"""``greenroom serve --workers N`` for real, for the cluster tests: a master, its workers, its
embedded redis-server, all real processes; readiness and events are read from the master's log
and from /health, never waited for by sleeping."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import gevent
import gevent.event

from conftest import ROOT, free_port, greenroom_command
from servers import wait_until

APP = os.path.join("tests", "apps", "cluster.py") + ":server"


class Cluster:
    def __init__(self, workers: int = 2, *extra: str, target: str = APP,
                 env: dict[str, str] | None = None, port: int | None = None,
                 command: list[str] | None = None, cwd: str = ROOT) -> None:
        self.port = port or free_port()
        self.endpoint = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._changed = gevent.event.Event()
        if command is None:
            command = [*greenroom_command(), "serve", target, "--workers", str(workers),
                       "--bind", f"127.0.0.1:{self.port}", *extra]
        self.proc = subprocess.Popen(
            command,
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            self._changed.set()
        self._changed.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[re.Match]:
        """The first ``count`` log lines matching ``pattern``, waiting for them as they come."""
        regex = re.compile(pattern)
        with gevent.Timeout(timeout, AssertionError(f"{count} x {pattern!r} not logged in {timeout}s:"
                                                    f"\n{self.log[-4000:]}")):
            while True:
                self._changed.clear()
                found = [m for m in map(regex.search, self.lines) if m]
                if len(found) >= count:
                    return found[:count]
                if self._reader.dead:
                    raise AssertionError(f"master exited ({self.proc.poll()}) before {pattern!r}:"
                                         f"\n{self.log[-4000:]}")
                self._changed.wait()

    def wait_serving(self, workers: int, timeout: float = 30.0) -> None:
        self.wait_for_log(r"is serving", workers, timeout)
        wait_until(lambda: self.alive_workers() == workers, timeout)

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.http + "/health", timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def workers(self) -> list[dict[str, Any]]:
        return self.health()["cluster"]["workers"]

    def alive_workers(self) -> int:
        try:
            return len([w for w in self.workers() if w["state"] == "serving"])
        except (OSError, KeyError, ValueError):
            return 0

    def worker_pid(self, process_id: str) -> int:
        return next(w["pid"] for w in self.workers() if w["processId"] == process_id)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        code = self.proc.wait(10)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class Gunicorn(Cluster):
    """``gunicorn -k greenroom.gunicorn.Worker -w N`` for real (its access log on stderr too)."""

    #: What each greenroom worker logs once it serves (greenroom.gunicorn.worker).
    SERVING = r"of generation \d+ serving"

    def __init__(self, workers: int = 3, *extra: str, app: str = "cluster:application",
                 conf: bool = True, env: dict[str, str] | None = None) -> None:
        port = free_port()
        command = [sys.executable, "-m", "gunicorn", "-w", str(workers),
                   "--bind", f"127.0.0.1:{port}", "--chdir", os.path.join(ROOT, "tests", "apps"),
                   "--no-control-socket",  # gunicorn 27 otherwise shares ~/.gunicorn/gunicorn.ctl
                   *(["-c", "python:greenroom.gunicorn.conf"] if conf else []), *extra, app]
        super().__init__(workers, env=env, port=port, command=command)

    def wait_serving(self, workers: int, timeout: float = 30.0, count: int | None = None) -> None:
        self.wait_for_log(self.SERVING, count or workers, timeout)
        wait_until(lambda: self.alive_workers() == workers, timeout)
