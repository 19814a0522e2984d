"""Rooms survive a deploy: ``greenroom serve --workers 2 --migrate`` + SIGHUP moves live rooms to
the new code with their state, and the official clients follow without noticing (issue 12).

The application is a copy of tests/apps/migrating.py in a temporary directory; the test edits
it on disk (VERSION "v1" -> "v2") before the reload, so the new generation really runs new code.
Waits are on log lines, process exits and the clients' own events (tests/js/migrate_probe.mjs).
"""

import collections
import json
import os
import shutil
import signal
import subprocess

import gevent
import pytest
from cluster_process import Cluster

from greenroom.client import Client

from conftest import JS_DIR, ROOT
from servers import wait_until

pytestmark = pytest.mark.timeout(240)


class Probe:
    """One migrate_probe.mjs process: several official clients, driven by JSON lines."""

    def __init__(self, sdk, endpoint, *args):
        self.proc = subprocess.Popen(
            ["node", os.path.join(JS_DIR, "migrate_probe.mjs"), "--client", sdk, "--endpoint",
             endpoint, "--room", "board", *map(str, args)],
            cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.sdk_log = []
        self.ready = self._answer()["ready"]

    def _answer(self):
        line = ""
        while not line.startswith("{"):  # the SDKs log their reconnections on stdout too
            line = self.proc.stdout.readline()
            self.sdk_log.append(line)
            assert line, f"probe exited ({self.proc.poll()})"
        answer = json.loads(line)
        assert "error" not in answer, answer
        return answer

    def do(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def quit(self):
        if self.proc.poll() is None:
            self.do(cmd="quit")
            self.proc.wait(20)


@pytest.fixture
def app(tmp_path):
    path = tmp_path / "app.py"
    shutil.copy(os.path.join(ROOT, "tests", "apps", "migrating.py"), path)
    return path


@pytest.fixture
def start(app, tmp_path):
    started = []
    events = tmp_path / "events"

    def start(*extra):
        cluster = Cluster(2, "--migrate", "--graceful-timeout", "40", *extra, target=f"{app}:server",
                          env={"GREENROOM_TEST_EVENTS": str(events)})
        started.append(cluster)
        cluster.wait_serving(2)
        return cluster

    start.events = lambda: [line.split() for line in events.read_text().splitlines()] \
        if events.exists() else []
    yield start
    for cluster in started:
        if cluster.proc.poll() is None:
            cluster.stop()


def new_code(app):
    app.write_text(app.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))


def by_room(clients):
    rooms = collections.defaultdict(list)
    for c in clients:
        rooms[c["roomId"]].append(c)
    return rooms


def test_rooms_move_to_the_new_code_with_state_and_sessions(start, app):
    cluster = start()
    sdk17 = Probe("sdk17", cluster.endpoint, "--create", 5, "--per-room", 2)
    room_ids = sorted({c["roomId"] for c in sdk17.ready})
    sdk18 = Probe("sdk18", cluster.endpoint + "/v18", "--room-ids", ",".join(room_ids), "--per-room", 2)
    probes = [sdk17, sdk18]
    for n in (1, 2):
        for probe in probes:
            probe.do(cmd="move", until=n)
    sdk17.do(cmd="log", i=0, text="before the deploy")
    before = {c["sessionId"]: c for p in probes for c in p.do(cmd="report")["clients"]}
    assert all(c["versions"] == [] for c in before.values())
    assert all(v[0] == "v1" for p in probes for c in p.do(cmd="version")["clients"] for v in c["versions"])
    owners = {w["processId"] for w in cluster.workers()}

    new_code(app)
    cluster.signal(signal.SIGHUP)
    cluster.wait_for_log(r"generation 2 is serving; retiring 2 worker")
    moved = cluster.wait_for_log(r"room (\S+) \(board\) moved to (\S+-g2-\S+) with 4 client", 5, timeout=60)
    assert {m.group(1) for m in moved} == set(room_ids)

    after = [c for p in probes for c in p.do(cmd="reconnected", timeout=60000)["clients"]]
    assert all(c["reconnects"] >= 1 and c["leaves"] == [] for c in after), after
    for c in after:  # same room, same session, the same state as before the move
        assert c["sessionId"] in before and c["roomId"] == before[c["sessionId"]]["roomId"]
        assert c["state"] == before[c["sessionId"]]["state"]
    for probe in probes:  # what happens after the move arrives as patches
        probe.do(cmd="move", until=3)
    final = [c for p in probes for c in p.do(cmd="version")["clients"]]
    for c in final:
        assert c["versions"][-1][0] == "v2"  # the new code answers
        players = c["state"]["players"]
        assert len(players) == 4 and all(p["x"] == 3 for p in players.values())
    logs = {c["roomId"]: c["state"]["log"] for c in final}
    assert sum(log == ["before the deploy"] for log in logs.values()) == 1
    workers = {w["processId"] for w in cluster.workers()}
    assert all("-g2-" in w for w in workers) and not workers & owners  # the old workers are gone

    events = start.events()
    joins = collections.Counter(e[2] for e in events if e[0] == "join")
    assert set(joins.values()) == {1} and len(joins) == 20  # no on_join for a moved client
    assert not [e for e in events if e[0] == "leave"]  # and no on_leave
    restores = [e for e in events if e[0] == "restore"]
    assert sorted(e[1] for e in restores) == room_ids and {e[3] for e in restores} == {"v2"}
    assert {int(e[2]) for e in restores} == {8}  # on_snapshot/on_restore carried the counter
    for probe in probes:
        probe.quit()


def test_a_room_whose_snapshot_fails_stays_on_the_old_code_and_the_others_move(start, app):
    cluster = start()
    client = Client(cluster.endpoint)
    stubborn = client.create("stubborn")
    boards = [client.create("board") for _ in range(2)]
    young = client.join_by_id(boards[0].room_id)  # joined just before the reload
    new_code(app)
    cluster.signal(signal.SIGHUP)
    line = cluster.wait_for_log(rf"room {stubborn.room_id} \(stubborn\) stays on the old code: .*"
                                r"this room keeps its timers to itself", timeout=60)[0].string
    assert "Traceback" not in cluster.log
    assert "RuntimeError" in line
    for room in boards:  # the Python client does not reconnect by itself: it sees the 4010
        cluster.wait_for_log(rf"room {room.room_id} \(board\) moved to \S+-g2-", timeout=60)
        assert room.wait_closed(20)[0] == 4010
    # the youngest client was waited for: moved only once in the room for the SDKs' minUptime
    assert young.wait_closed(20)[0] == 4010
    stubborn.send("version")
    assert stubborn.wait_for_message("version", timeout=5)[0] == "v1"  # still the old code
    stubborn.leave()
    # its worker exits once its last room is gone
    cluster.wait_for_log(r"generation 1 exited \(exit code 0\)", 2, timeout=60)


def test_a_manual_reconnection_follows_the_room_to_its_new_worker(start, app):
    from greenroom.schema import StateDecoder

    cluster = start()
    client = Client(cluster.endpoint, state_decoder=StateDecoder)
    room = client.create("board")
    room.send("move")
    wait_until(lambda: room.state and room.state["players"][room.session_id]["x"] == 1, 5)
    token, session = room.reconnection_token, room.session_id
    new_code(app)
    cluster.signal(signal.SIGHUP)
    assert room.wait_closed(60)[0] == 4010
    back = client.reconnect(token)  # POST /matchmake/reconnect, answered by any worker
    assert back.session_id == session and back.room_id == room.room_id
    assert "-g2-" in back.reservation.process_id
    back.send("version")
    assert back.wait_for_message("version", timeout=5)[0] == "v2"
    back.send("move")
    wait_until(lambda: back.state["players"][session]["x"] == 2, 5)
    back.leave()


def test_joins_during_a_migrating_reload_never_fail_nor_overfill(start, app):
    cluster = start()
    client = Client(cluster.endpoint)
    joined, errors, stop = [], [], gevent.event.Event()

    def keep_joining():
        while not stop.is_set():
            try:
                joined.append(client.join_or_create("board", {}, 30))
            except Exception as exc:  # noqa: BLE001 - every failure is the test's failure
                errors.append(repr(exc))

    jobs = [gevent.spawn(client.join_or_create, "board", {}, 30) for _ in range(100)]
    joiners = [gevent.spawn(keep_joining) for _ in range(4)]
    new_code(app)
    cluster.signal(signal.SIGHUP)
    gevent.joinall(jobs, timeout=60)
    cluster.wait_for_log(r"migration: \d+ room\(s\) moved", 2, timeout=90)
    stop.set()
    gevent.joinall(joiners, timeout=40)
    errors += [repr(job.exception) for job in jobs if not job.successful()]
    assert errors == [], cluster.log[-6000:]
    rooms = collections.Counter(r.room_id for r in [job.value for job in jobs] + joined)
    assert max(rooms.values()) <= 4  # no room over capacity, whichever code seated them
