"""Backends failing under a running deployment (issue 4): Redis or MongoDB stopped and
restarted for real, while clients play."""

import http.client
import json
import os
import subprocess

import gevent
import pytest
import redis

from greenroom.client import Client
from greenroom.drivers import from_url as driver_from_url

from conftest import ROOT, free_port, greenroom_command

APP = os.path.join("tests", "apps", "capped.py") + ":server"


def matchmake_status(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/matchmake/joinOrCreate/capped", body=b"{}",
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def once_answered(predicate, timeout, failure):
    """Poll ``predicate`` while a restarted backend comes back (its errors mean "not yet")
    until it holds; ``failure`` (the AssertionError's message) after ``timeout`` seconds."""
    with gevent.Timeout(timeout, AssertionError(failure)):
        while True:
            try:
                if predicate():
                    return
            except Exception:  # noqa: BLE001 - the backend is still coming back
                pass
            gevent.sleep(0.1)


def wait_for_log_line(proc, texts, timeout, failure):
    """Read the server's log from here on until a line holds each of ``texts``."""
    with gevent.Timeout(timeout, AssertionError(failure)):
        for line in proc.stderr:
            if all(text in line for text in texts):
                return


def wait_until_listed(url, room_id, deadline=20.0):
    """The process lists its rooms again by itself once the backend is back (bounded wait)."""
    driver = driver_from_url(url)
    try:
        once_answered(lambda: driver.get(room_id) is not None, deadline,
                      f"room {room_id} was not listed again")
    finally:
        driver.close()


@pytest.fixture
def restart_after(redis_server, mongo_server):
    stopped = []
    yield stopped.append
    for server in stopped:
        server.start()


def test_redis_lost_503_rooms_play_on_then_recovers(serve_process, redis_server, restart_after):
    redis.Redis.from_url(redis_server.url).flushall()
    _, port = serve_process(APP, "--redis-url", redis_server.url)
    client = Client(f"ws://127.0.0.1:{port}")
    playing = client.join_or_create("capped")
    restart_after(redis_server)
    redis_server.stop()
    status, body = matchmake_status(port)
    assert status == 503
    assert body["code"] == 503 and "unavailable" in body["error"]
    playing.send("echo", "still playing")
    assert playing.wait_for_message("echo") == "still playing"
    redis_server.start()  # empty: it saves nothing
    wait_until_listed(redis_server.url, playing.room_id)
    again = client.join_or_create("capped")
    assert again.room_id == playing.room_id


def test_mongo_lost_503_rooms_play_on_then_recovers(serve_process, redis_server, mongo_server,
                                                     restart_after):
    redis.Redis.from_url(redis_server.url).flushall()
    _, port = serve_process(APP, "--redis-url", redis_server.url, "--mongo-uri", mongo_server.uri)
    client = Client(f"ws://127.0.0.1:{port}")
    playing = client.join_or_create("capped")
    restart_after(mongo_server)
    mongo_server.stop()
    status, body = matchmake_status(port)
    assert status == 503 and "unavailable" in body["error"]
    playing.send("echo", "still playing")
    assert playing.wait_for_message("echo") == "still playing"
    mongo_server.start()
    wait_until_listed(mongo_server.uri, playing.room_id)
    again = client.join_or_create("capped")
    assert again.room_id == playing.room_id


def test_unreachable_redis_at_start_exits_non_zero_naming_the_url():
    url = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.run([*greenroom_command(), "serve", APP, "--bind", "127.0.0.1:0",
                           "--redis-url", url], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert url.rsplit("/", 1)[0] in proc.stderr and "cannot start" in proc.stderr


def test_unreachable_mongo_at_start_exits_non_zero_naming_the_uri():
    uri = f"mongodb://127.0.0.1:{free_port()}/greenroom"
    proc = subprocess.run([*greenroom_command(), "serve", APP, "--bind", "127.0.0.1:0",
                           "--mongo-uri", uri], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "127.0.0.1" in proc.stderr and "cannot start" in proc.stderr


def test_a_listing_update_lost_in_a_mongo_outage_is_written_after_it(serve_process, redis_server,
                                                                     mongo_server, restart_after):
    """MongoDB keeps its data across a restart, so nothing is missing to make the heartbeat list
    the rooms again; the seat count a client's leave wrote while it was down must still be
    written once it is back (the storm with a MongoDB restart found listings behind their
    rooms, tests/test_storms_backends.py)."""
    redis.Redis.from_url(redis_server.url).flushall()
    proc, port = serve_process(APP, "--redis-url", redis_server.url, "--mongo-uri", mongo_server.uri)
    client = Client(f"ws://127.0.0.1:{port}")
    staying = client.join_or_create("capped")
    leaving = client.join_or_create("capped")
    assert leaving.room_id == staying.room_id
    driver = driver_from_url(mongo_server.uri)
    try:
        with gevent.Timeout(10, AssertionError("the second seat was never listed")):
            while driver.get(staying.room_id).clients != 2:
                gevent.sleep(0.1)
        restart_after(mongo_server)
        mongo_server.stop()
        leaving.leave()  # the listing update (clients 1) fails: MongoDB is down
        wait_for_log_line(proc, ("listing update", "failed"), 20,
                          "the listing update did not fail")
        mongo_server.start()
        once_answered(lambda: driver.get(staying.room_id).clients == 1, 10,
                      "the listing still counts the client who left")
    finally:
        driver.close()
    staying.send("echo", "still here")
    assert staying.wait_for_message("echo") == "still here"


def test_a_listing_whose_removal_failed_in_a_mongo_outage_is_removed_after_it(
        serve_process, redis_server, mongo_server, restart_after):
    """A room disposed while MongoDB is down keeps its stored listing, and the heartbeat renews
    every listing of its process: without a later removal it stayed a room that matchmaking
    offered and nobody hosted (the storm with a MongoDB restart found one)."""
    redis.Redis.from_url(redis_server.url).flushall()
    proc, port = serve_process(APP, "--redis-url", redis_server.url, "--mongo-uri", mongo_server.uri)
    room = Client(f"ws://127.0.0.1:{port}").join_or_create("capped")
    driver = driver_from_url(mongo_server.uri)
    try:
        with gevent.Timeout(10, AssertionError("the room was never listed")):
            while driver.get(room.room_id) is None:
                gevent.sleep(0.1)
        restart_after(mongo_server)
        mongo_server.stop()
        room.leave()  # the last client: the room is disposed, its listing's removal fails
        wait_for_log_line(proc, (f"room {room.room_id}: removing its listing failed",), 20,
                          "the removal did not fail")
        mongo_server.start()
        stored = {"roomId": room.room_id}  # the document itself, whatever its lease says
        once_answered(lambda: driver.collection.find_one(stored) is None, 10,
                      "the disposed room is still listed")
    finally:
        driver.close()
