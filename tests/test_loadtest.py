"""``greenroom loadtest`` driving the benchmark's echo room on a real greenroom and on the
reference Colyseus 0.17, and failing with one clear line when it cannot."""

import io
import json
import os
import subprocess

import pytest

from benchmarks import servers as bench
from greenroom import Room, Server
from greenroom.loadtest.bot import Hooks
from greenroom.loadtest.runner import Config, LoadTest, make_client

from conftest import ROOT, free_port, greenroom_command

BOT = os.path.join("tests", "apps", "echo_bot.py")


def loadtest(*args, timeout=60):
    proc = subprocess.run([*greenroom_command(), "loadtest", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    summary = json.loads(proc.stdout.splitlines()[-1]) if proc.stdout.strip() else None
    return proc, summary


@pytest.fixture(params=["greenroom", "colyseus"])
def echo_target(request, tmp_path):
    """The benchmark's echo room (50 seats), on a real server of either kind."""
    if request.param == "colyseus":
        bench.npm_install()
        spec = bench.ServerSpec("colyseus", bench.COLYSEUS_CMD)
    else:
        spec = bench.ServerSpec("greenroom", bench.GREENROOM_CMD)
    with bench.Processes() as processes:
        server = bench.start(processes, spec, tmp_path / f"{spec.name}.log")
        yield f"ws://127.0.0.1:{server.port}"


def test_50_bots_for_5_seconds(echo_target):
    proc, summary = loadtest(echo_target, "--room", "echo", "--clients", 50, "--duration", 5,
                             "--rate", 100, "--script", BOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1  # not a terminal: the JSON summary alone, no live line
    assert (summary["connected"], summary["failed"], summary["dropped"]) == (50, 0, 0)
    assert summary["errors"] == {} and summary["script_errors"] == {}
    assert summary["close_codes"] == {"4000": 50}
    assert summary["join_ms"]["samples"] == 50 and 0 < summary["join_ms"]["p50"] <= summary["join_ms"]["p99"]
    rtt = summary["rtt_ms"]
    assert rtt["samples"] >= 100 and 0 < rtt["p50"] <= rtt["p99"] <= rtt["max"]
    echoes = summary["messages_in"] - 50  # one welcome per bot
    assert summary["messages_out"] >= 50 * 20  # 10 ticks/s per bot, for most of 5 s
    assert 0.8 * summary["messages_out"] <= echoes <= summary["messages_out"]
    assert 4.5 <= summary["duration_s"] < 5 + 10


def test_the_live_line_and_the_v5_dialect(greenroom_boot):
    class Echo(Room):
        def on_create(self, options):
            self.on_message("echo", lambda client, message: client.send("echo", message))

    server = Server(dialect="v5")
    server.define("echo", Echo)
    test = greenroom_boot(server)
    config = Config(target=test.endpoint, room="echo", clients=5, duration=1.5, rate=0,
                    options={}, dialect="v5", ping_interval=0.2, script=BOT)
    terminal = io.StringIO()
    summary = LoadTest(config, Hooks.load(os.path.join(ROOT, BOT)), make_client(config),
                       progress=terminal).run()
    assert (summary["connected"], summary["failed"], summary["script_errors"]) == (5, 0, {})
    assert summary["messages_in"] > 0 and summary["rtt_ms"]["samples"] > 0
    lines = [line for line in terminal.getvalue().split("\r\x1b[K") if line]
    assert any("connected 5/5" in line and "rtt p50" in line for line in lines), lines


def test_unreachable_server_exits_1_with_one_line():
    target = f"ws://127.0.0.1:{free_port()}"
    proc, summary = loadtest(target, "--room", "echo")
    assert proc.returncode == 1 and summary is None
    assert proc.stderr.count("\n") == 1 and "connection refused" in proc.stderr and target in proc.stderr


def test_bad_url_exits_2_with_one_line():
    proc, _ = loadtest("ftp://example.org", "--room", "echo")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "ws://, wss://, http:// or https://" in proc.stderr


def test_bots_that_never_started_within_the_duration_exit_1_saying_so(echo_server):
    proc, summary = loadtest(echo_server.endpoint, "--room", "echo", "--clients", 5,
                             "--rate", 1, "--duration", 1.5)
    assert (summary["started"], summary["connected"], summary["failed"]) == (2, 2, 0)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "only 2 of 5 bots started" in proc.stderr


def test_every_join_refused_exits_1_naming_the_error(echo_server):
    proc, summary = loadtest(echo_server.endpoint, "--room", "nope", "--clients", 3, "--duration", 1)
    assert proc.returncode == 1 and summary["failed"] == 3
    assert "every join failed: [520]" in proc.stderr
