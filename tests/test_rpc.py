"""Calls between processes: on each presence backend inside this process, then across two real
OS processes sharing the test Redis."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gevent
import gevent.event
import pytest

from greenroom.presence.rpc import (
    RPC,
    Idempotent,
    RemoteCallError,
    RemoteCallTimeout,
    RemoteProcessGone,
)

from servers import _die_with_parent, wait_until


class Service:
    """Handlers that record how often they ran."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.sleeping = gevent.event.Event()

    def add(self, a, b):
        return a + b

    def fail(self, text):
        raise ValueError(f"bad input: {text}")

    def slow(self, seconds):
        self.sleeping.set()
        gevent.sleep(seconds)
        return "slept"

    def create(self, name, seconds=0.0):
        gevent.sleep(seconds)
        self.created.append(name)
        return f"{name}-{len(self.created)}"


@pytest.fixture
def pair(presence):
    """Two RPC endpoints (as two processes would have) on one presence, plus the callee's handlers."""
    service = Service()
    callee, caller = RPC(presence, "callee"), RPC(presence, "caller")
    for method in ("add", "fail", "slow", "create"):
        callee.register(method, getattr(service, method))
    callee.start()
    caller.start()
    yield caller, callee, service
    caller.close()
    callee.close()


def test_call_returns_the_result(pair):
    caller, _, _ = pair
    assert caller.call("callee", "add", 2, 3) == 5
    assert caller.call("callee", "add", [1], [2, {"k": b"v"}]) == [1, 2, {"k": b"v"}]


def test_remote_exception_type_and_message_travel_back(pair):
    caller, _, _ = pair
    with pytest.raises(RemoteCallError) as raised:
        caller.call("callee", "fail", "x")
    assert raised.value.remote_type == "ValueError"
    assert raised.value.remote_message == "bad input: x"
    assert "callee" in str(raised.value) and "fail" in str(raised.value)


def test_unknown_method_and_unserialisable_result_are_remote_errors(pair):
    caller, callee, _ = pair
    with pytest.raises(RemoteCallError, match="LookupError"):
        caller.call("callee", "nope")
    callee.register("weird", lambda: object())
    with pytest.raises(RemoteCallError, match="TypeError"):
        caller.call("callee", "weird")


def test_timeout(pair):
    caller, _, _ = pair
    started = time.monotonic()
    with pytest.raises(RemoteCallTimeout, match="'slow'"):
        caller.call("callee", "slow", 2, timeout=0.2)
    assert time.monotonic() - started < 1.5
    assert caller._pending == {}


def test_a_call_to_a_process_nobody_listens_for_fails_at_once(pair):
    """PUBLISH tells how many received the request: none means the process is gone, and the
    caller knows it now, not after the timeout (issue 16, defect 9)."""
    caller, _, _ = pair
    with gevent.Timeout(10, AssertionError("the caller waited for the reply timeout")):
        with pytest.raises(RemoteProcessGone, match="ghost"):
            caller.call("ghost", "add", 1, 2, timeout=60)
    assert caller._pending == {}


def test_slow_handler_does_not_block_other_calls(pair):
    caller, _, service = pair
    slow = gevent.spawn(caller.call, "callee", "slow", 1.0)
    assert service.sleeping.wait(3)
    started = time.monotonic()
    assert caller.call("callee", "add", 1, 1) == 2
    assert time.monotonic() - started < 0.5
    assert slow.get(timeout=3) == "slept"


def test_retry_with_the_same_request_id_runs_once(pair):
    caller, _, service = pair
    with pytest.raises(RemoteCallTimeout):
        caller.call("callee", "create", "duel", 0.3, timeout=0.05, request_id="req-1")
    # The retry arrives while the first run is still going: it joins it.
    assert caller.call("callee", "create", "duel", 0.3, timeout=2, request_id="req-1") == "duel-1"
    assert caller.call("callee", "create", "duel", 0.3, timeout=2, request_id="req-1") == "duel-1"
    assert service.created == ["duel"]
    assert caller.call("callee", "create", "duel", timeout=2, request_id="req-2") == "duel-2"
    assert caller.call("callee", "create", "duel", timeout=2) == "duel-3"


def test_hundred_concurrent_calls(pair):
    caller, _, _ = pair
    jobs = [gevent.spawn(caller.call, "callee", "add", n, 1000) for n in range(100)]
    gevent.joinall(jobs, raise_error=True, timeout=10)
    assert [job.value for job in jobs] == [n + 1000 for n in range(100)]


def test_malformed_requests_and_replies_are_logged_and_skipped(pair, presence, caplog):
    caller, callee, _ = pair
    with caplog.at_level(logging.WARNING):
        presence.publish(callee.request_channel, {"m": 1})
        presence.publish(callee.request_channel, "garbage")
        presence.publish(caller.reply_channel, ["garbage"])
        assert caller.call("callee", "add", 1, 2) == 3
    wait_until(lambda: caplog.text.count("malformed") >= 3)


def test_idempotent_caches_failures_and_forgets_after_ttl():
    once = Idempotent(ttl=0.2)
    runs = []

    def flaky():
        runs.append(1)
        raise KeyError("first outcome")

    for _ in range(2):
        with pytest.raises(KeyError):
            once.run("k", flaky)
    assert len(runs) == 1
    wait_until(lambda: (once._forget_old(), len(once) == 0)[1], timeout=2)
    with pytest.raises(KeyError):
        once.run("k", flaky)
    assert len(runs) == 2


# -- across OS processes -----------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import os, sys, gevent
    from greenroom.presence.redis import RedisPresence
    from greenroom.presence.rpc import RPC

    presence = RedisPresence(sys.argv[1])
    rpc = RPC(presence, "child")
    created = []

    def create(name, seconds):
        gevent.sleep(seconds)
        created.append(name)
        return {"room": f"{name}-{len(created)}", "pid": os.getpid()}

    def fail():
        raise PermissionError("not in this process")

    rpc.register("create", create)
    rpc.register("created", lambda: len(created))
    rpc.register("fail", fail)
    rpc.register("slow", lambda seconds: gevent.sleep(seconds))
    rpc.register("ask_parent", lambda x: rpc.call("parent", "double", x))
    rpc.start()
    print("ready", flush=True)
    gevent.wait()  # serve until terminated (or until the parent dies: PDEATHSIG)
    """
)


@pytest.fixture
def child(redis_server, redis_presence):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_server.url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=env,
        preexec_fn=_die_with_parent,
    )
    with gevent.Timeout(20, AssertionError("child process did not start")):
        assert process.stdout.readline().strip() == b"ready"
    parent = RPC(redis_presence, "parent")
    parent.register("double", lambda x: 2 * x)
    parent.start()
    yield parent, process
    parent.close()
    process.terminate()
    process.wait(10)


def test_calls_across_processes(child):
    parent, process = child
    reply = parent.call("child", "create", "duel", 0)
    assert reply == {"room": "duel-1", "pid": process.pid}
    assert parent.call("child", "ask_parent", 21) == 42  # and back the other way
    with pytest.raises(RemoteCallError, match="PermissionError: not in this process"):
        parent.call("child", "fail")
    with pytest.raises(RemoteCallTimeout):
        parent.call("child", "slow", 2, timeout=0.2)


def test_idempotent_retry_across_processes(child):
    parent, _ = child
    with pytest.raises(RemoteCallTimeout):
        parent.call("child", "create", "race", 0.4, timeout=0.1, request_id="create:abc")
    second = parent.call("child", "create", "race", 0.4, timeout=3, request_id="create:abc")
    third = parent.call("child", "create", "race", 0.4, timeout=3, request_id="create:abc")
    assert second == third and second["room"] == "race-1"
    assert parent.call("child", "created") == 1


def test_hundred_concurrent_calls_across_processes(child):
    parent, process = child
    started = time.monotonic()
    jobs = [gevent.spawn(parent.call, "child", "create", f"r{n}", 0) for n in range(100)]
    gevent.joinall(jobs, raise_error=True, timeout=15)
    assert sorted(job.value["room"].split("-")[0] for job in jobs) == sorted(
        f"r{n}" for n in range(100)
    )
    assert {job.value["pid"] for job in jobs} == {process.pid}
    assert parent.call("child", "created") == 100
    assert time.monotonic() - started < 10
