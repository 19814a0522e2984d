"""``greenroom serve --workers N``: a real master, real workers, the embedded redis-server, real
signals, and the official clients of tests/js beside the Python client (issue 9).

Every wait is on an event: a line of the master's log, a field of /health, a process exit or a
socket event (tests/cluster_process.py).
"""

import collections
import os
import signal
import subprocess
import sys

import gevent
import pytest
import redis
from cluster_process import Cluster

from greenroom.client import Client, MatchMakeError, SeatReservation

from conftest import JS_DIR, ROOT
from servers import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def start_cluster():
    started = []

    def start(workers=2, *extra, **kwargs):
        cluster = Cluster(workers, *extra, **kwargs)
        started.append(cluster)
        cluster.wait_serving(workers)
        return cluster

    yield start
    for cluster in started:
        if cluster.proc.poll() is None:
            cluster.stop()


def node(script, *args):
    return subprocess.Popen(["node", os.path.join(JS_DIR, script), *map(str, args)], cwd=JS_DIR,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def last_json(text):
    import json

    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, text
    return json.loads(lines[-1])


def embedded_redis(cluster):
    path = cluster.wait_for_log(r"listening on unix:(\S+redis\.sock)")[0].group(1)
    return redis.Redis(unix_socket_path=path)


def rooms_by_worker(rooms):
    by = collections.defaultdict(list)
    for room in rooms:
        by[room.reservation.process_id].append(room)
    return by


def join_many(client, n, name="table"):
    jobs = [gevent.spawn(client.join_or_create, name, {}, 60) for _ in range(n)]
    gevent.joinall(jobs, timeout=90)
    errors = [repr(job.exception) for job in jobs if not job.successful()]
    assert errors == []
    return [job.value for job in jobs]


def echo_ok(room, payload):
    room.send("echo", payload)
    return room.wait_for_message("echo", timeout=5) == payload


def leave_all(rooms):
    gevent.joinall([gevent.spawn(room.leave) for room in rooms], timeout=30)


# -- joins, hand-off, placement -----------------------------------------------------------------
@pytest.mark.parametrize("workers", [2, 4])
def test_200_concurrent_joins_fill_50_rooms_of_4_across_workers(start_cluster, workers):
    cluster = start_cluster(workers)
    js = node("concurrent.mjs", "--client", "sdk17", "--endpoint", cluster.endpoint, "--room", "table",
              "--n", 100, "--hold", "--timeout", 60000, "--deadline", 120000)
    python = join_many(Client(cluster.endpoint), 100)  # at the same time as the 100 of colyseus.js
    assert js.stdout.readline().strip() == "held"

    welcomes = [room.wait_for_message("welcome") for room in python]
    assert all(echo_ok(room, f"echo-{i}") for i, room in enumerate(python))
    by_room = collections.defaultdict(list)
    for room in python:
        by_room[room.room_id].append(room)
    for room_id, members in by_room.items():
        members[0].send("shout", room_id)
        assert all(m.wait_for_message("shout", timeout=5) == room_id for m in members)

    js.stdin.write("\n")
    js.stdin.flush()
    result = last_json(js.stdout.read())
    assert js.wait(30) == 0 and result["errors"] == [] and result["ok"] == 100
    sizes = collections.Counter(room.room_id for room in python)
    sizes.update(result["rooms"])
    assert len(sizes) == 50 and set(sizes.values()) == {4}
    assert len({w["pid"] for w in welcomes}) > 1  # rooms live in more than one worker
    wait_until(lambda: cluster.health()["cluster"]["handoffsTotal"]["sent"] > 0, 5)
    leave_all(python)


@pytest.mark.parametrize("client,reference,path", [("sdk17", "sdk17-ref017.json", ""),
                                                   ("sdk18", "sdk18-ref018.json", "/v18")])
def test_official_sdk_scenarios_pass_against_two_workers(start_cluster, run_js, client, reference, path):
    from test_js_clients import compare_steps, expected

    cluster = start_cluster(2)
    ours = run_js("scenario.mjs", "--client", client, "--endpoint", cluster.endpoint + path, timeout=120)
    assert "error" not in ours, ours
    ref = expected(reference)
    stateful = ours["steps"]["join"].get("serializerId") == "schema"
    assert compare_steps(ours, ref, stateful) == {}
    assert ours["warnings"] == ref["warnings"]


def test_reconnections_that_land_on_another_worker_reach_the_held_seat(start_cluster, node_modules):
    """The owner of the room retires (TTOU: it stops accepting, keeps its rooms), so every
    reconnection is accepted by another worker and must be handed to the owner."""
    cluster = start_cluster(3, "--graceful-timeout", "20")
    client = Client(cluster.endpoint)
    owner_room = None
    for _ in range(12):  # placement spreads new rooms; find one in the oldest worker (-w1)
        room = client.create("table")
        if room.reservation.process_id.endswith("-w1"):
            owner_room = room
            break
    assert owner_room is not None, "no room was placed in the first worker"
    owner = owner_room.reservation.process_id
    probes = [node("reconnect_probe.mjs", "--client", sdk, "--endpoint", cluster.endpoint,
                   "--room-id", owner_room.room_id) for sdk in ("sdk17", "sdk18")]
    sessions = [probe.stdout.readline().split()[-1] for probe in probes]
    manual = client.join_by_id(owner_room.room_id)

    cluster.signal(signal.SIGTTOU)
    wait_until(lambda: any(w["processId"] == owner and w["state"] == "draining"
                           for w in cluster.workers()), 10)
    before = next(w for w in cluster.workers() if w["processId"] == owner)["handoffs"]["received"]

    for probe in probes:  # automatic reconnection (0.17 / 0.18) to the same URL
        probe.stdin.write("go\n")
        probe.stdin.flush()
    results = [last_json(probe.stdout.read()) for probe in probes]
    for result, session in zip(results, sessions, strict=True):
        assert "error" not in result, result
        assert result["reconnected"] and result["sessionIdAfter"] == session
        assert result["echo"] == {"after": "reconnect"}

    token = manual.reconnection_token  # manual reconnection: POST /matchmake/reconnect elsewhere
    manual.send("drop")
    manual.wait_closed(5)
    back = client.reconnect(token)
    assert back.session_id == manual.session_id and echo_ok(back, "manual")
    wait_until(lambda: next(w for w in cluster.workers() if w["processId"] == owner)
               ["handoffs"]["received"] >= before + 3, 5)
    leave_all([back, owner_room])


# -- failures ---------------------------------------------------------------------------------
def test_kill_9_of_a_worker(start_cluster):
    cluster = start_cluster(2)
    store = embedded_redis(cluster)
    client = Client(cluster.endpoint)
    rooms = join_many(client, 16)
    by_worker = rooms_by_worker(rooms)
    assert len(by_worker) == 2
    victim, doomed = sorted(by_worker.items())[0]
    doomed_ids = {room.room_id for room in doomed}
    from greenroom.drivers.redis import RedisDriver

    driver = RedisDriver(store)
    assert all(driver.get(room_id) is not None for room_id in doomed_ids)

    os.kill(cluster.worker_pid(victim), signal.SIGKILL)
    cluster.wait_for_log(rf"worker {victim} .* exited \(signal SIGKILL\)")
    wait_until(lambda: all(driver.get(room_id) is None for room_id in doomed_ids), 1.0)
    for room in doomed:
        assert room.wait_closed(5)[0] is not None  # its clients' sockets closed
    with gevent.Timeout(3):  # a socket for the dead processId is refused at once
        with pytest.raises(MatchMakeError) as refused:
            client.consume_seat_reservation(SeatReservation("table", doomed[0].room_id, victim, "nobody"))
    assert refused.value.code == 524 and refused.value.close_code == 4002
    cluster.wait_serving(2)  # replaced
    fresh = join_many(client, 40)
    assert all(echo_ok(room, "after") for room in fresh)
    leave_all(fresh + [r for r in rooms if r.room_id not in doomed_ids])


def test_sigstop_of_a_worker_is_killed_after_the_timeout_and_the_others_play_on(start_cluster):
    cluster = start_cluster(2, "--timeout", "2")
    client = Client(cluster.endpoint)
    by_worker = rooms_by_worker(join_many(client, 8))
    (frozen, _), (alive, playing) = sorted(by_worker.items())
    os.kill(cluster.worker_pid(frozen), signal.SIGSTOP)
    rounds = 0
    while not any(f"worker {frozen}" in line and "exited" in line for line in cluster.lines):
        assert echo_ok(playing[0], rounds)  # each answer within 5 s: the other worker never pauses
        rounds += 1
    assert rounds > 10
    assert f"worker {frozen}" in cluster.wait_for_log(r"silent for .*sending SIGABRT")[0].string
    cluster.wait_for_log(rf"worker {frozen} .* exited \(signal SIGKILL\)")
    cluster.wait_serving(2)


def test_kill_9_of_the_embedded_redis(start_cluster):
    cluster = start_cluster(2)
    client = Client(cluster.endpoint)
    rooms = join_many(client, 6)  # two rooms: one of 4 and one with two free seats
    half_full = next(r for r in rooms if sum(x.room_id == r.room_id for x in rooms) == 2)
    pids = {w["processId"]: w["pid"] for w in cluster.workers()}
    redis_pid = int(cluster.wait_for_log(r"embedded redis-server \(pid (\d+)\)")[0].group(1))

    os.kill(redis_pid, signal.SIGKILL)
    cluster.wait_for_log(r"embedded redis-server .* died .*restarting")
    statuses = []
    for _ in range(500):  # matchmaking answers 503 until the store is back, then recovers by itself
        try:
            joined = client.join_by_id(half_full.room_id, timeout=10)
            break
        except MatchMakeError as exc:
            statuses.append(exc.code)
    else:
        raise AssertionError(f"matchmaking did not recover: {collections.Counter(statuses)}")
    # 503 while the store is down, 522 (room not found) until the heartbeat lists the room again
    assert set(statuses) <= {503, 522}, statuses
    assert all(echo_ok(room, "still here") for room in rooms)  # no room was lost
    assert joined.room_id == half_full.room_id
    # the same workers announce themselves again: nothing of greenroom was restarted
    wait_until(lambda: {w["processId"]: w["pid"] for w in cluster.workers()} == pids, 5)
    leave_all(rooms + [joined])


def test_a_bad_target_halts_the_master_with_the_import_error_in_one_line(tmp_path):
    app = tmp_path / "broken.py"
    app.write_text("import greenroom_no_such_module\n")
    cluster = Cluster(2, target=f"{app}:server")
    assert cluster.proc.wait(10) != 0
    cluster._reader.join(5)
    lines = [line for line in cluster.lines if "No module named 'greenroom_no_such_module'" in line]
    assert lines and "Traceback" not in cluster.log
    assert "halting" in cluster.log


# -- signals ----------------------------------------------------------------------------------
def test_sighup_starts_a_new_generation_without_failing_a_join(start_cluster):
    cluster = start_cluster(2, "--graceful-timeout", "30")
    client = Client(cluster.endpoint)
    old = join_many(client, 20)
    joined, errors, stop = [], [], gevent.event.Event()

    def keep_joining():
        while not stop.is_set():
            try:
                joined.append(client.join_or_create("table", {}, 30))
            except Exception as exc:  # noqa: BLE001 - every failure is the test's failure
                errors.append(repr(exc))

    joiners = [gevent.spawn(keep_joining) for _ in range(4)]
    cluster.signal(signal.SIGHUP)
    cluster.wait_for_log(r"generation 2 is serving; retiring 2 worker")
    wait_until(lambda: sum("-g2-" in room.reservation.process_id for room in joined) >= 8, 20)
    stop.set()
    gevent.joinall(joiners, timeout=40)
    assert errors == [], cluster.log[-6000:]
    assert all(echo_ok(room, "old generation") for room in old)  # the old clients keep playing
    leave_all(old + joined)  # their rooms dispose: the old workers exit without the timeout
    cluster.wait_for_log(r"generation 1 exited \(exit code 0\)", 2, timeout=20)
    assert {w["generation"] for w in cluster.workers()} == {2}


def test_sigterm_stops_everything_cleanly(start_cluster, tmp_path):
    unix_path = tmp_path / "greenroom.sock"
    dispose_log = tmp_path / "disposed"
    cluster = start_cluster(2, "--bind", f"unix:{unix_path}",
                            env={"GREENROOM_TEST_DISPOSE_LOG": str(dispose_log)})
    assert unix_path.exists()
    client = Client(cluster.endpoint)
    rooms = join_many(client, 12)
    redis_pid = int(cluster.wait_for_log(r"embedded redis-server \(pid (\d+)\)")[0].group(1))
    run_dir = os.path.dirname(cluster.wait_for_log(r"listening on unix:(\S+redis\.sock)")[0].group(1))
    tree = [cluster.proc.pid, redis_pid, *(w["pid"] for w in cluster.workers())]

    cluster.signal(signal.SIGTERM)
    assert all(room.wait_closed(20)[0] == 4001 for room in rooms)
    assert cluster.proc.wait(35) == 0
    assert set(dispose_log.read_text().split()) == {room.room_id for room in rooms}
    for pid in tree:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not unix_path.exists() and not os.path.exists(run_dir)


def test_ttin_then_ttou_follow_the_worker_count(start_cluster):
    cluster = start_cluster(2)
    client = Client(cluster.endpoint)
    rooms = join_many(client, 8)
    cluster.signal(signal.SIGTTIN)
    cluster.wait_serving(3)
    more = join_many(client, 12)
    # The added worker is the least loaded: it takes new rooms (where the rest go after it
    # filled up depends on heartbeat timing, so only this is asserted).
    before = {r.reservation.process_id for r in rooms}
    assert {r.reservation.process_id for r in more} - before
    cluster.signal(signal.SIGTTOU)
    retired = cluster.wait_for_log(r"retiring worker (\S+)")[0].group(1)
    wait_until(lambda: cluster.alive_workers() == 2, 10)
    assert all(echo_ok(room, "ttou") for room in rooms + more)  # the retired worker's rooms too
    leave_all(rooms + more)
    cluster.wait_for_log(rf"worker {retired} .* exited \(exit code 0\)", timeout=20)


def test_the_master_imports_neither_gevent_nor_the_application(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(f"""
import os, signal, sys
sys.path.insert(0, {ROOT!r})
from greenroom.cluster.config import ClusterConfig
from greenroom.cluster.master import Master
from greenroom.cluster.workers import WorkerState

class Probe(Master):
    def note_booted_workers(self):
        super().note_booted_workers()
        if self.workers and all(w.state is WorkerState.SERVING for w in self.workers.values()):
            with open({str(tmp_path / 'modules')!r}, "w") as f:
                f.write("\\n".join(sorted(sys.modules)))
            os.kill(os.getpid(), signal.SIGTERM)

config = ClusterConfig(target={os.path.join(ROOT, 'tests', 'apps', 'cluster.py') + ':server'!r},
                       binds=[("127.0.0.1", 0)], workers=2)
sys.exit(Probe(config).run())
""")
    proc = subprocess.run([sys.executable, str(probe)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    modules = (tmp_path / "modules").read_text().split()
    forbidden = [m for m in modules if m.split(".")[0] in ("gevent", "geventwebsocket", "redis",
                                                           "pymongo", "mongoengine", "cluster", "echo")
                 or m.startswith(("greenroom.room", "greenroom.matchmaker", "greenroom.web",
                                  "greenroom.server", "greenroom.serving"))]
    assert forbidden == []
    assert "greenroom.cluster.master" in modules
