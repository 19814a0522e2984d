"""``greenroom serve`` as an operator runs it: a real process, real signals."""

import os
import signal
import subprocess
import sys

import gevent
import pytest

from greenroom.client import Client, MatchMakeError

from conftest import EXAMPLES, ROOT, free_port, greenroom_command


def test_serve_file_target_and_sigterm_closes_clients_with_4001(serve_process):
    proc, port = serve_process(os.path.join("examples", "echo.py") + ":server")
    client = Client(f"ws://127.0.0.1:{port}")
    rooms = [client.join_or_create("echo", {"name": f"p{i}"}) for i in range(6)]
    assert len({r.room_id for r in rooms}) == 2
    proc.send_signal(signal.SIGTERM)
    for room in rooms:
        assert room.wait_closed(15)[0] == 4001
    assert proc.wait(20) == 0
    assert "shutting down gracefully" in proc.stderr.read()


def test_serve_module_target(serve_process):
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = EXAMPLES + (os.pathsep + env_path if env_path else "")
    try:
        proc, port = serve_process("chat:server")
    finally:
        os.environ["PYTHONPATH"] = env_path
    client = Client(f"ws://127.0.0.1:{port}")
    ada = client.join_or_create("chat", {"name": "ada"})
    assert ada.wait_for_message("history") == []
    bob = client.join_or_create("chat", {"name": "bob"})
    assert ada.wait_for_message("joined") == "bob"
    bob.send("say", "hi")
    assert ada.wait_for_message("said") == {"from": "bob", "text": "hi"}
    with pytest.raises(MatchMakeError) as err:
        client.join_or_create("chat", {})
    assert err.value.code == 526 and "name is required" in err.value.message
    assert client.join_or_create("chat", {"name": "eve", "channel": "other"}).room_id != ada.room_id


@pytest.mark.parametrize("target,message", [
    ("examples/missing.py:server", "no such file"),
    ("examples/echo.py:nothing", "has no attribute 'nothing'"),
    ("examples/echo.py:EchoRoom", "not a greenroom.Server"),
    ("no_such_module_xyz:server", "cannot import"),
])
def test_bad_targets_exit_2_with_a_clear_message(target, message):
    proc = subprocess.run([*greenroom_command(), "serve", target, "--bind", "127.0.0.1:0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_gunicorn_worker_serves_rooms_and_sigterm_closes_clients_with_4001():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-k",
         "greenroom.web.gunicorn_worker.GeventWebSocketWorker", "--bind", f"127.0.0.1:{port}",
         "--no-control-socket", "--graceful-timeout", "10", "--chdir", EXAMPLES, "echo:application"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with gevent.Timeout(30, AssertionError("gunicorn worker did not boot")):
            for line in proc.stderr:
                if "Booting worker" in line:
                    break
        client = Client(f"ws://127.0.0.1:{port}")
        room = None
        with gevent.Timeout(20, AssertionError("gunicorn worker never answered")):
            while room is None:  # the worker boots its app after the log line
                try:
                    room = client.join_or_create("echo", {"name": "g"}, timeout=5)
                except OSError:
                    gevent.sleep(0.1)
        room.send("echo", "through gunicorn")
        assert room.wait_for_message("echo") == "through gunicorn"
        proc.send_signal(signal.SIGTERM)
        assert room.wait_closed(15)[0] == 4001
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_unix_bind_is_logged_with_its_path(tmp_path):
    """issue 17 item 5: it used to say ``listening on None:None``."""
    path = str(tmp_path / "greenroom.sock")
    proc = subprocess.Popen([*greenroom_command(), "serve", "examples/echo.py:server", "--bind",
                             f"unix:{path}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with gevent.Timeout(20):
            line = next(line for line in proc.stderr if "listening on" in line)
        assert f"listening on unix:{path} " in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("variable, value, says", [
    ("GREENROOM_LOG_LEVEL", "verbose", "GREENROOM_LOG_LEVEL='verbose': expected one of debug, info"),
    ("GREENROOM_HEARTBEAT", "abc", "GREENROOM_HEARTBEAT='abc': expected a positive number of seconds"),
    ("GREENROOM_LEASE", "1", "must cover at least two heartbeats"),
    ("GREENROOM_TIMEOUT", "soon", "invalid float value: 'soon'"),
])
def test_a_bad_setting_is_one_line_and_exit_2(variable, value, says, redis_url):
    """issue 17 item 4: each of these used to end in a traceback."""
    env = {**os.environ, variable: value, "GREENROOM_REDIS_URL": redis_url}
    result = subprocess.run([*greenroom_command(), "serve", "examples/echo.py:server", "--bind",
                             f"127.0.0.1:{free_port()}"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("greenroom")]) >= 1


@pytest.mark.parametrize("variable, value, says", [
    ("GREENROOM_HEARTBEAT", "abc", "GREENROOM_HEARTBEAT='abc': expected a positive number of seconds"),
    ("GREENROOM_LEASE", "1", "must cover at least two heartbeats"),
    ("GREENROOM_MAX_CONNECTIONS", "many", "GREENROOM_MAX_CONNECTIONS='many': expected a positive"),
])
def test_a_bad_setting_under_workers_2_is_one_line_and_exit_2(variable, value, says):
    """The master checks the environment before it forks, so a bad setting is the same one line
    and exit 2 as with one process, not a halt of the cluster (exit 3)."""
    env = {**os.environ, variable: value}
    result = subprocess.run([*greenroom_command(), "serve", "examples/echo.py:server", "--workers",
                             "2", "--bind", f"127.0.0.1:{free_port()}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr and "worker" not in result.stderr
