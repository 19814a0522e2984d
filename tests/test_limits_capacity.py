"""Rooms and clients per process (``Server(max_rooms=, max_clients=)``, ``GREENROOM_MAX_ROOMS``,
``GREENROOM_MAX_CLIENTS``): 100 concurrent joinOrCreate never take a process past its limit;
alone, the requests beyond it get 523 and the exact number fit; in a deployment (two processes
sharing Redis, ``--workers 2``) rooms spill to the process that still has room."""

import json
import logging
import os
import subprocess
import urllib.request
from collections import Counter

import gevent
import pytest
import redis
from cluster_process import Cluster

from greenroom import Room, Server
from greenroom.client import Client, MatchMakeError
from greenroom.settings import ConfigurationError

from conftest import ROOT, free_port, greenroom_command

APP = os.path.join("tests", "apps", "limits.py") + ":server"


class Capped(Room):
    max_clients = 4

    def on_create(self, options):
        self.on_message("echo", lambda client, message: client.send("echo", message))


def storm(endpoints, n=100, name="capped"):
    """n concurrent joinOrCreate (over the endpoints in turn): (rooms joined, error codes)."""
    clients = [Client(endpoint) for endpoint in endpoints]
    jobs = [gevent.spawn(clients[i % len(clients)].join_or_create, name, {}, 60) for i in range(n)]
    gevent.joinall(jobs, timeout=120)
    rooms = [job.value for job in jobs if job.successful()]
    errors = [job.exception for job in jobs if not job.successful()]
    unexpected = [repr(e) for e in errors if not isinstance(e, MatchMakeError)]
    assert unexpected == []
    return rooms, errors


def leave_all(rooms):
    gevent.joinall([gevent.spawn(room.leave) for room in rooms], timeout=30)


def rooms_per_process(rooms):
    return Counter(process for process, _ in {(r.reservation.process_id, r.room_id) for r in rooms})


@pytest.mark.parametrize("limits, seated, room_count", [
    ({"max_rooms": 10}, 40, 10),     # 10 rooms of 4
    ({"max_clients": 25}, 25, 7),    # 6 full rooms and one with a single client
])
def test_one_process_seats_exactly_its_limit_and_answers_523_beyond(serve, caplog, limits,
                                                                   seated, room_count):
    server = Server(**limits)
    server.define("capped", Capped)
    running = serve(server)
    with caplog.at_level(logging.INFO, logger="greenroom"):
        rooms, errors = storm([running.endpoint])
    assert len(rooms) == seated
    assert len(errors) == 100 - seated
    assert {e.code for e in errors} == {523}
    assert all("at its room or client limit" in e.message for e in errors)
    assert len(server.matchmaker.rooms) == room_count == len(server.matchmaker.query("capped"))
    shown = json.load(urllib.request.urlopen(running.http + "/health", timeout=5))["limits"]
    assert shown == {"maxRooms": limits.get("max_rooms"), "maxClients": limits.get("max_clients"),
                     "seats": seated}
    reached = [r for r in caplog.records if "reached its limit" in r.getMessage()]
    assert len(reached) == 1, [r.getMessage() for r in reached]
    rooms[0].send("echo", "the rooms play on")
    assert rooms[0].wait_for_message("echo") == "the rooms play on"
    leave_all(rooms)


def test_the_official_client_gets_523_and_the_message_past_the_limit(serve_process, run_js):
    _, port = serve_process(APP, env={"GREENROOM_MAX_ROOMS": "2"})
    result = run_js("concurrent.mjs", "--client", "sdk17", "--endpoint", f"ws://127.0.0.1:{port}",
                    "--n", 100, "--room", "capped", timeout=120)
    assert result.get("error") is None, result
    assert result["ok"] == 8 and result["roomCount"] == 2, result
    assert len(result["errors"]) == 92 and {e["code"] for e in result["errors"]} == {523}
    assert all('no process can create a "capped" room now' in e["message"]
               for e in result["errors"])


@pytest.mark.parametrize("variable, value, seated, check", [
    ("GREENROOM_MAX_ROOMS", "5", 40, "rooms"),      # 5 rooms of 4 each
    ("GREENROOM_MAX_CLIENTS", "10", 20, "seats"),   # 10 seats each
])
def test_two_processes_sharing_redis_fill_both_to_their_limit_then_answer_523(
        serve_process, redis_url, variable, value, seated, check):
    redis.Redis.from_url(redis_url).flushall()
    ports = [serve_process(APP, "--redis-url", redis_url, env={variable: value})[1]
             for _ in range(2)]
    rooms, errors = storm([f"ws://127.0.0.1:{port}" for port in ports])
    per_process = (rooms_per_process(rooms) if check == "rooms"
                   else Counter(room.reservation.process_id for room in rooms))
    assert sorted(per_process.values()) == [int(value)] * 2, per_process  # spilled, neither past
    assert len(rooms) == seated
    assert {e.code for e in errors} == {523} and len(errors) == 100 - seated
    leave_all(rooms)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_workers_2_fill_both_workers_to_their_limit_then_answer_523(how):
    if how == "flag":
        cluster = Cluster(2, "--max-rooms", "5", target=APP)
    else:
        cluster = Cluster(2, target=APP, env={"GREENROOM_MAX_ROOMS": "5"})
    try:
        cluster.wait_serving(2)
        rooms, errors = storm([cluster.endpoint])
        per_process = rooms_per_process(rooms)
        assert sorted(per_process.values()) == [5, 5], per_process
        assert set(per_process) == {w["processId"] for w in cluster.workers()}
        assert len(rooms) == 40
        assert {e.code for e in errors} == {523} and len(errors) == 60
        leave_all(rooms)
    finally:
        cluster.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("variable, value", [("GREENROOM_MAX_ROOMS", "lots"),
                                             ("GREENROOM_MAX_CLIENTS", "0")])
def test_a_bad_limit_is_one_line_and_exit_2(workers, variable, value):
    result = subprocess.run([*greenroom_command(), "serve", APP, "--workers", workers, "--bind",
                             f"127.0.0.1:{free_port()}"], cwd=ROOT,
                            env={**os.environ, variable: value}, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"{variable}={value!r}: expected a positive whole number (unset: no limit)" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("flag, value", [("--max-rooms", "lots"), ("--max-clients", "0")])
def test_a_bad_limit_flag_is_one_line_and_exit_2(flag, value):
    result = subprocess.run([*greenroom_command(), "serve", APP, flag, value, "--bind",
                             f"127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"argument {flag}: {value!r}: expected a positive whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_flag_seats_one_process_to_its_client_limit(serve_process):
    _, port = serve_process(APP, "--max-clients", "6")
    rooms, errors = storm([f"ws://127.0.0.1:{port}"], n=20)
    assert len(rooms) == 6 and {e.code for e in errors} == {523} and len(errors) == 14
    leave_all(rooms)


def test_a_server_argument_overriding_the_setting_says_so(monkeypatch, caplog):
    monkeypatch.setenv("GREENROOM_MAX_ROOMS", "5")
    with caplog.at_level(logging.WARNING, logger="greenroom.matchmaker"):
        assert Server(max_rooms=3).matchmaker.capacity.max_rooms == 3
    assert "Server(max_rooms=3) overrides GREENROOM_MAX_ROOMS=5 (--max-rooms)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="greenroom.matchmaker"):
        assert Server().matchmaker.capacity.max_rooms == 5
    assert "overrides" not in caplog.text


@pytest.mark.parametrize("value", [0, -1, 2.5, "10", True])
def test_a_bad_server_option_is_refused(value):
    with pytest.raises(ConfigurationError, match="expected a positive whole number"):
        Server(max_rooms=value)


def test_a_groups_seats_count_against_the_client_limit_all_at_once():
    """A QueueRoom's group is seated all or none: with 2 seats left under the process's client
    limit, a group of 3 gets none (not 2 of 3), and a group of 2 then fits exactly."""
    from greenroom import MatchMakeError, Room, Server

    class Open(Room):
        auto_dispose = False

    server = Server(max_clients=6)
    server.define("open", Open)
    mm = server.matchmaker
    room_id = mm.create_room("open", {}).room_id
    assert len(mm.reserve_seats(room_id, [{}, {}, {}, {}])) == 4
    with pytest.raises(MatchMakeError):
        mm.reserve_seats(room_id, [{}, {}, {}])
    engine = mm.engine(room_id)
    assert engine.seats_taken == 4
    assert len(mm.reserve_seats(room_id, [{}, {}])) == 2
    assert engine.seats_taken == 6
    mm.shutdown(timeout=5)
