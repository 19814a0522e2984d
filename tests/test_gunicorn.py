"""gunicorn with several workers: ``gunicorn -c python:greenroom.gunicorn.conf -w 3`` behaves like
``greenroom serve --workers 3`` (issue 10). Real gunicorn processes, the official clients of
tests/js beside the Python client; every wait is on a log line, a /health field, a process exit
or a socket event (tests/cluster_process.py)."""

import collections
import os
import signal

import gevent
import gevent.event
import pytest
from cluster_process import Gunicorn
from test_cluster import (
    echo_ok,
    embedded_redis,
    join_many,
    last_json,
    leave_all,
    node,
    rooms_by_worker,
)

from greenroom.client import Client, MatchMakeError, SeatReservation

from conftest import ROOT
from servers import wait_until

pytestmark = pytest.mark.timeout(180)

STOCK_WORKER = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"


@pytest.fixture
def start_gunicorn():
    started = []

    def start(workers=3, *extra, wait=True, **kwargs):
        server = Gunicorn(workers, *extra, **kwargs)
        started.append(server)
        if wait:
            server.wait_serving(workers)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


def answers(server):
    try:
        return server.health()["status"] == "ok"
    except OSError:
        return False


# -- one worker, the stock worker ----------------------------------------------------------------
def test_the_stock_gevent_websocket_worker_with_one_worker_passes_the_echo_scenario(start_gunicorn, run_js):
    from test_js_clients import compare_steps, expected

    server = start_gunicorn(1, "-k", STOCK_WORKER, conf=False, wait=False)
    wait_until(lambda: answers(server), 30)
    ours = run_js("scenario.mjs", "--client", "sdk17", "--endpoint", server.endpoint, timeout=120)
    assert "error" not in ours, ours
    ref = expected("sdk17-ref017.json")
    assert compare_steps(ours, ref, ours["steps"]["join"].get("serializerId") == "schema") == {}


# -- several workers -------------------------------------------------------------------------------
def test_100_concurrent_official_joins_fill_25_rooms_of_4_across_three_workers(start_gunicorn, tmp_path):
    access_log = tmp_path / "access.log"
    server = start_gunicorn(3, "--access-logfile", str(access_log))
    js = node("concurrent.mjs", "--client", "sdk17", "--endpoint", server.endpoint, "--room", "table",
              "--n", 100, "--hold", "--timeout", 60000, "--deadline", 120000)
    assert js.stdout.readline().strip() == "held"
    python = join_many(Client(server.endpoint), 8, name="table")  # two more rooms, beside them
    js.stdin.write("\n")
    js.stdin.flush()
    result = last_json(js.stdout.read())
    assert js.wait(30) == 0 and result["errors"] == [] and result["ok"] == 100
    sizes = collections.Counter(result["rooms"])
    assert len(sizes) == 25 and set(sizes.values()) == {4}
    assert result["welcomes"] == 100  # every official client heard its room
    assert all(echo_ok(room, f"echo-{i}") for i, room in enumerate(python))
    room_ids = {room.room_id for room in python}
    for room in python:  # a broadcast reaches every member, wherever their socket landed
        room.send("shout", room.room_id)
    assert all(room.wait_for_message("shout", timeout=5) in room_ids for room in python)
    wait_until(lambda: server.health()["cluster"]["handoffsTotal"]["sent"] > 0, 5)
    hosting = {w["processId"]: w["rooms"] for w in server.workers()}
    assert len(hosting) == 3 and sum(n > 0 for n in hosting.values()) > 1, hosting
    leave_all(python)
    server.stop()
    upgrades = [line for line in access_log.read_text().splitlines() if '" 101 ' in line]
    assert len(upgrades) >= 104, f"{len(upgrades)} access-log lines for WebSocket upgrades"


def test_rooms_live_in_every_worker_and_greenroom_logs_in_gunicorns_log(start_gunicorn):
    server = start_gunicorn(3)
    rooms = join_many(Client(server.endpoint), 48)
    by_worker = rooms_by_worker(rooms)
    assert len(by_worker) > 1
    assert all(echo_ok(room, "hello") for room in rooms)
    # greenroom's own lines, in gunicorn's error-log format, from the workers
    created = [line for line in server.lines if "(table) created" in line]
    assert created and all(line.startswith("[") and "[INFO]" in line for line in created)
    leave_all(rooms)


def test_automatic_reconnections_reach_the_held_seat_through_another_worker(start_gunicorn):
    server = start_gunicorn(3)
    client = Client(server.endpoint)
    owner_room = client.create("table")
    owner = owner_room.reservation.process_id
    handed_in = 0
    for attempt in range(8):  # the kernel picks the accepting worker: try until one is not the owner
        sdk = ("sdk17", "sdk18")[attempt % 2]
        probe = node("reconnect_probe.mjs", "--client", sdk, "--endpoint", server.endpoint + ("/v18" if sdk == "sdk18" else ""),
                     "--room-id", owner_room.room_id)
        session = probe.stdout.readline().split()[-1]
        wait_until(lambda: owner_stats(server, owner)["clients"] == 2, 5)
        before = owner_stats(server, owner)["handoffs"]["received"]
        probe.stdin.write("go\n")
        probe.stdin.flush()
        result = last_json(probe.stdout.read())
        assert probe.wait(10) == 0 and "error" not in result, result
        assert result["reconnected"] and result["sessionIdAfter"] == session
        assert result["echo"] == {"after": "reconnect"}
        wait_until(lambda: owner_stats(server, owner)["clients"] == 1, 10)  # the probe left
        handed_in += owner_stats(server, owner)["handoffs"]["received"] - before
        if handed_in:
            break
    assert handed_in > 0, "every reconnection landed on the room's own worker"
    leave_all([owner_room])


def owner_stats(server, process_id):
    return next(w for w in server.workers() if w["processId"] == process_id)


# -- signals and failures ------------------------------------------------------------------------
def test_sigterm_drains_with_4001_and_leaves_no_process_behind(start_gunicorn, tmp_path):
    dispose_log = tmp_path / "disposed"
    server = start_gunicorn(3, "--graceful-timeout", "10",
                            env={"GREENROOM_TEST_DISPOSE_LOG": str(dispose_log)})
    rooms = join_many(Client(server.endpoint), 12)
    redis_pid = int(server.wait_for_log(r"embedded redis-server \(pid (\d+)\)")[0].group(1))
    run_dir = os.path.dirname(server.wait_for_log(r"listening on unix:(\S+redis\.sock)")[0].group(1))
    tree = [server.proc.pid, redis_pid, *(w["pid"] for w in server.workers())]

    server.signal(signal.SIGTERM)
    assert all(room.wait_closed(10)[0] == 4001 for room in rooms)
    assert server.proc.wait(20) == 0
    assert set(dispose_log.read_text().split()) == {room.room_id for room in rooms}
    for pid in tree:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not os.path.exists(run_dir)


def test_sighup_reloads_without_failing_a_join(start_gunicorn):
    server = start_gunicorn(2, "--graceful-timeout", "8")
    client = Client(server.endpoint)
    old = join_many(client, 8)
    joined, errors, stop = [], [], gevent.event.Event()

    def keep_joining():
        while not stop.is_set():
            try:
                room = client.join_or_create("table", {}, 30)
                joined.append(room)
                assert echo_ok(room, "during the reload")
            except Exception as exc:  # noqa: BLE001 - every failure is the test's failure
                errors.append(repr(exc))

    joiners = [gevent.spawn(keep_joining) for _ in range(4)]
    server.signal(signal.SIGHUP)
    server.wait_for_log(r"of generation 2 serving", 2)
    wait_until(lambda: sum("-g2-" in room.reservation.process_id for room in joined) >= 8, 30)
    stop.set()
    gevent.joinall(joiners, timeout=40)
    assert errors == [], server.log[-6000:]
    # the old generation drained: its clients were closed with 4001 before gunicorn's deadline
    assert all(room.wait_closed(15)[0] == 4001 for room in old)
    wait_until(lambda: {w["generation"] for w in server.workers()} == {2}, 10)
    assert "Worker graceful timeout" not in server.log
    leave_all(joined)


def test_ttin_adds_a_worker_that_takes_rooms_with_the_hooks_in_a_users_own_config(start_gunicorn,
                                                                                  tmp_path):
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("from greenroom.gunicorn.conf import on_starting, pre_fork, child_exit, on_exit"
                      "  # noqa: F401\nworker_class = 'greenroom.gunicorn.Worker'\n")
    server = start_gunicorn(2, "-c", str(config), conf=False)
    assert "embedded redis-server" in server.log  # the user's config ran greenroom's hooks
    client = Client(server.endpoint)
    rooms = join_many(client, 8)
    server.signal(signal.SIGTTIN)
    server.wait_serving(3, count=3)
    more = join_many(client, 16)
    before = {r.reservation.process_id for r in rooms}
    assert {r.reservation.process_id for r in more} - before  # the added worker took new rooms
    assert all(echo_ok(room, "ttin") for room in rooms + more)
    leave_all(rooms + more)


def test_kill_9_of_a_worker_is_replaced_and_its_listings_vanish_at_once(start_gunicorn):
    server = start_gunicorn(3)
    store = embedded_redis(server)
    client = Client(server.endpoint)
    by_worker = rooms_by_worker(join_many(client, 24))
    victim, doomed = max(by_worker.items(), key=lambda item: len(item[1]))
    doomed_ids = {room.room_id for room in doomed}
    from greenroom.drivers.redis import RedisDriver

    driver = RedisDriver(store)
    assert all(driver.get(room_id) is not None for room_id in doomed_ids)
    os.kill(owner_stats(server, victim)["pid"], signal.SIGKILL)
    server.wait_for_log(r"was sent SIGKILL")
    # the lease is 2 s (tests/apps/cluster.py): gone within 1 s means child_exit removed them
    wait_until(lambda: all(driver.get(room_id) is None for room_id in doomed_ids), 1.0)
    assert server.wait_for_log(rf"worker {victim} exited: its listings were removed")
    for room in doomed:
        assert room.wait_closed(5)[0] is not None
    with gevent.Timeout(5), pytest.raises(MatchMakeError) as refused:
        client.consume_seat_reservation(SeatReservation("table", doomed[0].room_id, victim, "nobody"))
    assert refused.value.code == 524
    server.wait_serving(3, count=4)  # gunicorn replaced it
    fresh = join_many(client, 24)
    assert all(echo_ok(room, "after") for room in fresh)


@pytest.mark.parametrize("worker", ["greenroom.gunicorn.Worker", STOCK_WORKER])
def test_two_workers_without_a_shared_presence_say_so_and_how_to_fix_it(start_gunicorn, worker):
    server = start_gunicorn(2, "-k", worker, conf=False, wait=False)
    wait_until(lambda: answers(server), 30)
    client = Client(server.endpoint)
    jobs = [gevent.spawn(client.join_or_create, "table", {}, 20) for _ in range(40)]
    gevent.joinall(jobs, timeout=60)
    failures = [job.exception for job in jobs if not job.successful()]
    assert failures, "with two private presences some sockets must reach the other worker"
    assert all(isinstance(exc, MatchMakeError) and exc.code == 524 for exc in failures)
    assert all("shares no presence" in exc.message for exc in failures), failures[0].message
    line = server.wait_for_log(r"reached process \S+, which has a local presence")[0].string
    assert "greenroom.gunicorn.conf" in line and "GREENROOM_REDIS_URL" in line
    assert "Traceback" not in server.log
    leave_all([job.value for job in jobs if job.successful()])


def test_flask_and_greenroom_share_one_port_under_three_workers(start_gunicorn):
    import urllib.request

    server = start_gunicorn(3, "--chdir", os.path.join(ROOT, "examples"), app="flask_mount:application")
    with urllib.request.urlopen(server.http + "/", timeout=5) as response:
        assert b"served by Flask" in response.read()
    client = Client(server.endpoint)
    rooms = join_many(client, 30, name="lobby")
    assert len({room.room_id for room in rooms}) == 1  # one lobby, whichever worker each socket hit
    assert all(room.wait_for_message("hello", timeout=5) == "from greenroom" for room in rooms)
    wait_until(lambda: server.health()["cluster"]["handoffsTotal"]["sent"] > 0, 5)
    leave_all(rooms)
