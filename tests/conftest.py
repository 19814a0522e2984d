"""Test set-up: gevent is patched before anything else is imported (docs/architecture.md, "Boot order")."""

from gevent import monkey

monkey.patch_all()

import importlib.util  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import pytest  # noqa: E402

from servers import (  # noqa: E402,F401 - real Redis and MongoDB-protocol servers (docs/architecture.md, "Tests")
    driver,
    mongo_driver,
    mongo_server,
    mongo_uri,
    presence,
    redis_driver,
    redis_presence,
    redis_server,
    redis_url,
)

# The test kit (greenroom/testing): greenroom_boot, greenroom, TestServer.
pytest_plugins = ["greenroom.testing"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def greenroom_command():
    exe = shutil.which("greenroom")
    return [exe] if exe else [sys.executable, "-m", "greenroom.cli"]


def wait_until_listening(proc, deadline=20.0):
    """Read the server's log until it says it is listening (its own readiness signal)."""
    seen = []
    with gevent.Timeout(deadline, AssertionError(f"server did not start listening: {seen}")):
        for line in proc.stderr:
            seen.append(line)
            if "listening on" in line:
                return
    raise AssertionError(f"server exited early with {proc.wait()}: {''.join(seen)}")


@pytest.fixture
def serve_process():
    """serve_process(target, *args, env=None) -> (Popen, port): ``greenroom serve`` for real."""
    procs = []

    def start(target, *extra, env=None):
        port = free_port()
        proc = subprocess.Popen(
            [*greenroom_command(), "serve", target, "--bind", f"127.0.0.1:{port}", *extra],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        procs.append(proc)
        wait_until_listening(proc)
        return proc, port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def load_example(name: str):
    """Import examples/<name>.py as a fresh module (each test gets its own Server)."""
    path = os.path.join(EXAMPLES, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"example_{name}_{os.urandom(4).hex()}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RunningServer:
    def __init__(self, server, wsgi_server):
        self.server = server
        self.wsgi_server = wsgi_server
        self.port = wsgi_server.server_port
        self.endpoint = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"

    @property
    def matchmaker(self):
        return self.server.matchmaker

    def stop(self):
        self.server.shutdown(timeout=5)


@pytest.fixture
def serve():
    """serve(server) -> RunningServer listening on 127.0.0.1, stopped after the test."""
    started = []

    def start(server):
        running = RunningServer(server, server.listen("127.0.0.1", 0))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def echo_server(serve):
    return serve(load_example("echo").server)


def pytest_configure(config):
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def node_modules():
    """The official JS clients of tests/js, installed from its lock file on first use."""
    import shutil
    import subprocess

    if shutil.which("node") is None:
        pytest.fail("Node.js is required for the protocol tests (node not on PATH)")
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "sdk17")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=JS_DIR, check=True, timeout=300)
    return JS_DIR


def sdk_project(directory, node_modules: str, sdk: str) -> None:
    """Make ``directory`` a Node project whose ``@colyseus/sdk`` is tests/js's pinned ``sdk``
    ("sdk17", "sdk18"): a script written there imports the SDK as a user's file would."""
    (directory / "node_modules" / "@colyseus").mkdir(parents=True)
    os.symlink(os.path.join(node_modules, "node_modules", sdk),
               directory / "node_modules" / "@colyseus" / "sdk")
    (directory / "package.json").write_text('{"type": "module"}')


@pytest.fixture
def run_js(node_modules):
    """run_js(script, *args) -> the JSON object the script printed on stdout."""
    import json
    import subprocess

    def run(script, *args, timeout=60):
        proc = subprocess.run(["node", os.path.join(node_modules, script), *map(str, args)],
                              cwd=node_modules, capture_output=True, text=True, timeout=timeout)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise AssertionError(f"{script} printed no JSON (exit {proc.returncode}):\n"
                                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return json.loads(lines[-1])

    return run
