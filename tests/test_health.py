"""Liveness and readiness (/health, /ready) against the real Redis and MongoDB-protocol servers,
stopped and restarted for real."""

import gevent
import pytest

from greenroom import Server
from greenroom.health import BackendProbe, Readiness

from conftest import load_example
from servers import wait_until


def echo_server(**backends):
    server = Server(**backends)
    server.define("echo", load_example("echo").EchoRoom)
    return server


@pytest.fixture
def restart_after():
    """Servers a test stops are running again after it, whatever happened."""
    stopped = []
    yield stopped.append
    for backend in stopped:
        backend.start()


def ready_becomes(test_server, status, timeout=20):
    """Nothing signals a backend's loss or return but the probe itself, whose answer is kept a
    second: poll /ready as a balancer does."""
    return wait_until(lambda: (r := test_server.get("/ready")).status == status and r,
                      timeout=timeout, interval=0.1)


def test_ready_turns_503_naming_redis_while_it_is_down(greenroom_boot, redis_server, restart_after):
    redis_server.start()
    test = greenroom_boot(echo_server(redis_url=redis_server.url))
    ready = test.get("/ready")
    assert ready.status == 200, ready.body
    assert ready.json()["checks"] == {"presence": "ok", "driver": "ok", "accepting": "ok"}
    playing = test.connect("echo")
    restart_after(redis_server)
    redis_server.stop()
    ready = ready_becomes(test, 503, timeout=5)
    body = ready.json()
    assert body["status"] == "not ready" and body["processId"] == test.server.process_id
    assert body["reason"].startswith("presence: ") and redis_server.url.rsplit("/", 1)[0] in body["reason"]
    assert test.post("/matchmake/joinOrCreate/echo", {}).status == 503  # what /ready foretold
    health = test.get("/health")  # liveness: the process answers, and says what it knows
    assert health.status == 200 and health.json()["status"] == "ok"
    assert health.json()["backends"]["presence"] != "ok"
    playing.send("move", {"x": 1, "y": 2})  # rooms play on
    assert playing.wait_for_state(lambda s: s["players"][playing.session_id]["x"] == 1)
    redis_server.start()
    ready_becomes(test, 200)
    assert test.get("/health").json()["backends"] == {"presence": "ok", "driver": "ok"}


def test_ready_turns_503_naming_the_driver_while_mongodb_is_down(greenroom_boot, redis_server,
                                                                  mongo_server, restart_after):
    redis_server.start()
    mongo_server.start()
    test = greenroom_boot(echo_server(redis_url=redis_server.url, mongo_uri=mongo_server.uri))
    assert test.get("/ready").status == 200
    restart_after(mongo_server)
    mongo_server.stop()
    ready = ready_becomes(test, 503, timeout=5)
    body = ready.json()
    assert body["checks"]["presence"] == "ok" and body["checks"]["driver"] != "ok"
    assert body["reason"].startswith("driver: ")
    mongo_server.start()
    ready_becomes(test, 200)


def test_ready_turns_503_when_shutting_down_while_health_stays_200(greenroom_boot):
    test = greenroom_boot(echo_server())
    assert test.get("/ready").json()["checks"]["presence"] == "ok (in memory)"
    test.matchmaker.stop_accepting()  # the first step of a graceful shutdown
    ready = test.get("/ready")
    assert ready.status == 503 and ready.json()["reason"] == "shutting down"
    health = test.get("/health")
    assert health.status == 200 and health.json()["status"] == "shutting down"
    assert test.get("/ready/more").status == 404


def test_a_probe_storm_checks_each_backend_once_per_interval():
    calls = []

    class Backend:
        def ping(self):
            calls.append(1)
            gevent.sleep(0.05)  # a round trip, during which more probes arrive

    readiness = Readiness({"presence": Backend()}, accepting=lambda: True, max_age=30)
    probes = [gevent.spawn(readiness.check) for _ in range(100)]
    gevent.joinall(probes, raise_error=True)
    assert all(p.value[0] for p in probes)
    assert len(calls) == 1


def test_a_backend_that_hangs_is_not_ready_within_the_timeout_and_not_piled_on():
    release = gevent.event.Event()
    calls = []

    def ping():
        calls.append(1)
        release.wait()

    probe = BackendProbe("driver", ping, max_age=0, timeout=0.1)
    assert probe.state(wait=True) == "no answer within 0.1s"
    assert probe.state(wait=True) == "no answer within 0.1s"
    assert len(calls) == 1  # the hanging check is waited on, never started twice
    release.set()
    gevent.sleep(0)
    assert probe.state(wait=True) == "ok"
