"""README.rst's console blocks other than single ``greenroom serve`` lines: pip, gunicorn, curl,
the load tester, a reload by pid file.

tests/test_readme.py runs the ``greenroom serve`` lines, the Python blocks and the Quick start
client; this file runs the rest, each as the README writes it, with only addresses (ports, the
gunicorn control socket) and the load test's length changed. The first test fails when the README
gains a command that no test here or there runs.
"""

import configparser
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from cluster_process import Cluster
from test_readme import console_commands

from conftest import ROOT, free_port, greenroom_command

#: What runs each kind of README command (the first pattern a command matches).
RUNNERS = [
    (r"^greenroom serve \S+( --bind \S+)?( --workers \S+)?( --migrate)?( --bind \S+)? "
     r"--pid-file ", "test_the_reload_block_reloads_by_its_pid_file"),
    (r"^(\w+=\S+ )?greenroom serve ", "test_readme.test_each_greenroom_serve_line_starts_..."),
    (r"^cd examples/client && npm ci && node client\.mjs ",
     "test_readme.test_the_quick_start_client_runs_against_the_echo_example"),
    (r"^pip install -e '\.\[test\]' && python -m pytest$", "test_ci_runs_the_readme_test_command"),
    (r"^pip install ", "test_every_pip_line_names_what_the_project_provides"),
    (r"^gunicorn ", "test_each_gunicorn_line_serves_and_stops"),
    (r"^curl ", "test_the_monitor_curl_line_lists_rooms"),
    (r"^greenroom loadtest ", "test_the_load_test_block_passes"),
    (r"^kill -HUP \$\(cat greenroom\.pid\)", "test_the_reload_block_reloads_by_its_pid_file"),
]


def commands(prefix: str) -> list[str]:
    return [c for c in console_commands() if c.startswith(prefix)]


def localised(command: str, port: int) -> str:
    """The command on 127.0.0.1:PORT instead of the README's 2567 (on any interface)."""
    return re.sub(r"(?:0\.0\.0\.0|127\.0\.0\.1):2567", f"127.0.0.1:{port}", command)


def test_every_readme_command_is_run_by_a_test():
    unrun = [c for c in console_commands() if not any(re.search(p, c) for p, _ in RUNNERS)]
    assert not unrun, f"README console commands no test runs: {unrun}"


def test_ci_runs_the_readme_test_command():
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert "pip install --quiet -e '.[test]'" in ci
    assert re.search(r"^python -m pytest\b", ci, re.M)


def test_every_pip_line_names_what_the_project_provides():
    """A newcomer's pip lines must name extras that exist and packages the test suite has."""
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    extras = {name for name in config["options.extras_require"]}
    lines = commands("pip install ")
    assert len(lines) >= 3
    for line in lines:
        words = shlex.split(line.split("&&")[0])[2:]
        for spec in (w for w in words if w not in ("-e", "--quiet")):
            name, _, extra = spec.partition("[")
            extra = extra.rstrip("]")
            if name in (".", "greenroom"):
                assert not extra or extra in extras, f"{line}: no extra {extra!r} in setup.cfg"
            else:
                module = {"flask": "flask", "gunicorn": "gunicorn"}[name]
                assert importlib.util.find_spec(module), f"{line}: {name} is not in [test]"
                if extra:
                    assert importlib.util.find_spec(extra), f"{line}: {extra} missing"


def gunicorn_argv(command: str, port: int) -> list[str]:
    words = shlex.split(localised(command, port))
    assert words[0] == "gunicorn" and "--bind" in words, f"no --bind in {command!r}"
    return [sys.executable, "-m", "gunicorn", "--no-control-socket", *words[1:]]


@pytest.mark.parametrize("command", commands("gunicorn "))
def test_each_gunicorn_line_serves_and_stops(command):
    port = free_port()
    workers = int(shlex.split(command)[shlex.split(command).index("-w") + 1])
    server = Cluster(command=gunicorn_argv(command, port), port=port)
    try:
        server.wait_for_log(r"of generation \d+ serving", workers, timeout=60)
        assert server.health()["status"] == "ok"
        if "flask_mount" in command:
            page = subprocess.run(["curl", "-sf", f"{server.http}/"], capture_output=True,
                                  text=True, timeout=10)
            assert page.returncode == 0 and "Flask" in page.stdout, page.stdout
    finally:
        assert server.stop() == 0, server.log[-3000:]


def serve(command: str, port: int, cwd: str = ROOT, **env: str) -> Cluster:
    words = shlex.split(localised(command, port))
    if words[-1] == "&":
        words.pop()
    while re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if "--bind" not in words:
        words += ["--bind", f"127.0.0.1:{port}"]
    argv = [*greenroom_command(), *words[1:]]
    argv = [os.path.join(ROOT, w) if w.startswith(("examples/", "benchmarks/")) else w
            for w in argv]
    return Cluster(command=argv, port=port, env=env, cwd=cwd)


def test_the_monitor_curl_line_lists_rooms():
    (start,) = [c for c in console_commands() if "GREENROOM_MONITOR_TOKEN=" in c]
    (curl,) = commands("curl ")
    port = free_port()
    server = serve(start, port)
    try:
        server.wait_for_log("listening on")
        result = subprocess.run(localised(curl, port), shell=True, capture_output=True,
                                text=True, timeout=10)
        assert result.returncode == 0, result.stderr
        listing = json.loads(result.stdout)
        assert listing["rooms"] == [] and listing["processId"]
    finally:
        assert server.stop() == 0, server.log[-3000:]


def test_the_load_test_block_passes():
    """The block as written, for 3 s with 50 bots rather than 30 s with 200."""
    (start,) = [c for c in console_commands() if c.startswith("greenroom serve benchmarks/")]
    (load,) = commands("greenroom loadtest ")
    port = free_port()
    server = serve(start, port)
    try:
        server.wait_for_log("listening on")
        words = shlex.split(localised(load, port))
        words[words.index("--duration") + 1] = "3"
        words[words.index("--clients") + 1] = "50"
        result = subprocess.run([*greenroom_command(), *words[1:]], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["connected"] == 50 and summary["failed"] == 0, summary
    finally:
        assert server.stop() == 0, server.log[-3000:]


def test_the_reload_block_reloads_by_its_pid_file(tmp_path):
    (start,) = [c for c in console_commands() if "--pid-file" in c]
    (hup,) = commands("kill -HUP ")
    workers = int(shlex.split(start)[shlex.split(start).index("--workers") + 1])
    server = serve(start, free_port(), cwd=str(tmp_path))
    try:
        server.wait_serving(workers, timeout=60)
        subprocess.run(hup, shell=True, cwd=tmp_path, check=True, timeout=10)
        server.wait_for_log(r"received SIGHUP: starting generation 2")
        server.wait_for_log(r"of generation 2 is serving", workers, timeout=60)
        assert server.health()["status"] == "ok"
    finally:
        assert server.stop() == 0, server.log[-3000:]
    assert not (tmp_path / "greenroom.pid").exists()

